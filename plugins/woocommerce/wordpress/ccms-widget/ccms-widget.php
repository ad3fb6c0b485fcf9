<?php
/**
 * Plugin Name:       CCMS Widget
 * Description:       Puts the CCMS customer-care contact widget on every page of your store: shoppers can reach a person, file a complaint and track an order from anywhere.
 * Version:           1.0.0
 * Requires at least: 6.3
 * Requires PHP:      7.4
 * Author:            ccms-addon
 * License:           Apache-2.0
 * License URI:       https://www.apache.org/licenses/LICENSE-2.0
 * Text Domain:       ccms-widget
 *
 * The plugin only loads the widget: one small async script from the CCMS add-on, with the shop's
 * public widget key as its data-shop-key attribute. It stores two settings (Settings > CCMS Widget)
 * and nothing else; it sets no cookie and reads no shopper data.
 *
 * @package CCMS_Widget
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit; // Loaded by WordPress only.
}

/** The option holding array( 'widget_key' => string, 'addon_url' => string ). */
const CCMS_WIDGET_OPTION = 'ccms_widget_settings';
/** The script handle of the loader. */
const CCMS_WIDGET_HANDLE = 'ccms-widget-loader';
/** The nonce action of the settings form. */
const CCMS_WIDGET_NONCE = 'ccms_widget_save';
/** The admin-post action the settings form posts to. */
const CCMS_WIDGET_ACTION = 'ccms_widget_save';
/** The settings page slug (Settings > CCMS Widget). */
const CCMS_WIDGET_PAGE = 'ccms-widget';
/** The capability needed to see and change the settings. */
const CCMS_WIDGET_CAPABILITY = 'manage_options';
/** Where the loader lives under the add-on URL. */
const CCMS_WIDGET_LOADER_PATH = '/widget/v1/loader.js';

/**
 * The saved settings, with empty defaults.
 *
 * @return array{widget_key: string, addon_url: string}
 */
function ccms_widget_settings() {
	$saved = get_option( CCMS_WIDGET_OPTION, array() );
	$saved = is_array( $saved ) ? $saved : array();
	return array(
		'widget_key' => isset( $saved['widget_key'] ) ? (string) $saved['widget_key'] : '',
		'addon_url'  => isset( $saved['addon_url'] ) ? (string) $saved['addon_url'] : '',
	);
}

/**
 * A widget key as the add-on issues them (letters, digits, "_" and "-"), or '' when it is not one.
 *
 * @param mixed $value The submitted value, already unslashed.
 * @return string
 */
function ccms_widget_sanitize_key( $value ) {
	$value = trim( sanitize_text_field( (string) $value ) );
	return 1 === preg_match( '/^[A-Za-z0-9_-]{1,64}$/', $value ) ? $value : '';
}

/**
 * The add-on's address without a trailing slash, or '' when it is not an http(s) URL.
 *
 * @param mixed $value The submitted value, already unslashed.
 * @return string
 */
function ccms_widget_sanitize_url( $value ) {
	$url = esc_url_raw( trim( (string) $value ), array( 'https', 'http' ) );
	return '' === $url ? '' : untrailingslashit( $url );
}

/**
 * The loader's URL for these settings, '' while the plugin is not configured.
 *
 * @param array $settings The settings from ccms_widget_settings().
 * @return string
 */
function ccms_widget_loader_url( $settings ) {
	if ( '' === $settings['addon_url'] || '' === $settings['widget_key'] ) {
		return '';
	}
	return $settings['addon_url'] . CCMS_WIDGET_LOADER_PATH;
}

// ------------------------------------------------------------------------------------------------
// Front end: the loader on every page, async, in the footer.
// ------------------------------------------------------------------------------------------------

add_action( 'wp_enqueue_scripts', 'ccms_widget_enqueue' );

/**
 * Enqueue the loader on every front-end page (WordPress 6.3+ loading strategy: async).
 */
function ccms_widget_enqueue() {
	$src = ccms_widget_loader_url( ccms_widget_settings() );
	if ( '' === $src ) {
		return;
	}
	// No version: the loader URL is the one the add-on serves with its own short cache and ETag.
	wp_enqueue_script(
		CCMS_WIDGET_HANDLE,
		esc_url_raw( $src ),
		array(),
		null,
		array(
			'in_footer' => true,
			'strategy'  => 'async',
		)
	);
}

add_filter( 'script_loader_tag', 'ccms_widget_script_tag', 10, 3 );

/**
 * Add the shop's widget key to our script tag as data-shop-key (escaped), and nothing else.
 *
 * @param string $tag    The script tag WordPress built.
 * @param string $handle The script's handle.
 * @param string $src    The script's URL.
 * @return string
 */
function ccms_widget_script_tag( $tag, $handle, $src ) {
	if ( CCMS_WIDGET_HANDLE !== $handle || false !== strpos( $tag, 'data-shop-key=' ) ) {
		return $tag;
	}
	$settings = ccms_widget_settings();
	$position = strpos( $tag, '<script' );
	if ( '' === $settings['widget_key'] || false === $position ) {
		return $tag;
	}
	$attribute = ' data-shop-key="' . esc_attr( $settings['widget_key'] ) . '"';
	return substr_replace( $tag, '<script' . $attribute, $position, strlen( '<script' ) );
}

// ------------------------------------------------------------------------------------------------
// Admin: Settings > CCMS Widget.
// ------------------------------------------------------------------------------------------------

add_action( 'admin_menu', 'ccms_widget_admin_menu' );

/**
 * Register the settings page under Settings.
 */
function ccms_widget_admin_menu() {
	add_options_page(
		__( 'CCMS Widget', 'ccms-widget' ),
		__( 'CCMS Widget', 'ccms-widget' ),
		CCMS_WIDGET_CAPABILITY,
		CCMS_WIDGET_PAGE,
		'ccms_widget_render_settings'
	);
}

add_filter( 'plugin_action_links_' . plugin_basename( __FILE__ ), 'ccms_widget_action_links' );

/**
 * A "Settings" link on the Plugins screen.
 *
 * @param array $links The plugin's action links.
 * @return array
 */
function ccms_widget_action_links( $links ) {
	$url = admin_url( 'options-general.php?page=' . CCMS_WIDGET_PAGE );
	array_unshift( $links, '<a href="' . esc_url( $url ) . '">' . esc_html__( 'Settings', 'ccms-widget' ) . '</a>' );
	return $links;
}

/**
 * The settings page: the widget key and the add-on URL, posted to admin-post.php with a nonce.
 */
function ccms_widget_render_settings() {
	if ( ! current_user_can( CCMS_WIDGET_CAPABILITY ) ) {
		wp_die( esc_html__( 'You are not allowed to change these settings.', 'ccms-widget' ), '', array( 'response' => 403 ) );
	}
	$settings = ccms_widget_settings();
	$status   = isset( $_GET['ccms-widget-status'] ) ? sanitize_key( wp_unslash( $_GET['ccms-widget-status'] ) ) : ''; // phpcs:ignore WordPress.Security.NonceVerification.Recommended -- display only.
	?>
	<div class="wrap">
		<h1><?php echo esc_html( get_admin_page_title() ); ?></h1>
		<?php if ( 'saved' === $status ) : ?>
			<div class="notice notice-success is-dismissible"><p><?php esc_html_e( 'Settings saved. The widget now appears on every page of your store.', 'ccms-widget' ); ?></p></div>
		<?php elseif ( 'invalid' === $status ) : ?>
			<div class="notice notice-error"><p><?php esc_html_e( 'The widget key or the add-on URL was not valid, so the widget is off. Copy both again from the CCMS dashboard.', 'ccms-widget' ); ?></p></div>
		<?php endif; ?>
		<p><?php esc_html_e( 'Copy the widget key and the add-on URL from your CCMS dashboard. The contact widget then appears on every page of your store.', 'ccms-widget' ); ?></p>
		<form method="post" action="<?php echo esc_url( admin_url( 'admin-post.php' ) ); ?>">
			<input type="hidden" name="action" value="<?php echo esc_attr( CCMS_WIDGET_ACTION ); ?>">
			<?php wp_nonce_field( CCMS_WIDGET_NONCE, 'ccms_widget_nonce' ); ?>
			<table class="form-table" role="presentation">
				<tr>
					<th scope="row"><label for="ccms-widget-key"><?php esc_html_e( 'Widget key', 'ccms-widget' ); ?></label></th>
					<td>
						<input name="widget_key" id="ccms-widget-key" type="text" class="regular-text code" autocomplete="off" spellcheck="false" pattern="[A-Za-z0-9_\-]{1,64}" value="<?php echo esc_attr( $settings['widget_key'] ); ?>">
						<p class="description"><?php esc_html_e( 'Public: it only names your shop to the widget.', 'ccms-widget' ); ?></p>
					</td>
				</tr>
				<tr>
					<th scope="row"><label for="ccms-widget-addon-url"><?php esc_html_e( 'Add-on URL', 'ccms-widget' ); ?></label></th>
					<td>
						<input name="addon_url" id="ccms-widget-addon-url" type="url" class="regular-text code" placeholder="https://" value="<?php echo esc_attr( $settings['addon_url'] ); ?>">
						<p class="description"><?php esc_html_e( 'The address of your CCMS add-on, e.g. https://care.example.com', 'ccms-widget' ); ?></p>
					</td>
				</tr>
			</table>
			<?php submit_button(); ?>
		</form>
	</div>
	<?php
}

add_action( 'admin_post_' . CCMS_WIDGET_ACTION, 'ccms_widget_save' );

/**
 * Save the settings form: capability and nonce checked first, every value sanitised.
 */
function ccms_widget_save() {
	if ( ! current_user_can( CCMS_WIDGET_CAPABILITY ) ) {
		wp_die( esc_html__( 'You are not allowed to change these settings.', 'ccms-widget' ), '', array( 'response' => 403 ) );
	}
	check_admin_referer( CCMS_WIDGET_NONCE, 'ccms_widget_nonce' );

	$raw_key = isset( $_POST['widget_key'] ) ? wp_unslash( $_POST['widget_key'] ) : ''; // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized -- sanitised below.
	$raw_url = isset( $_POST['addon_url'] ) ? wp_unslash( $_POST['addon_url'] ) : ''; // phpcs:ignore WordPress.Security.ValidatedSanitizedInput.InputNotSanitized -- sanitised below.
	$key     = ccms_widget_sanitize_key( $raw_key );
	$url     = ccms_widget_sanitize_url( $raw_url );
	update_option(
		CCMS_WIDGET_OPTION,
		array(
			'widget_key' => $key,
			'addon_url'  => $url,
		)
	);
	$status = ( '' !== $key && '' !== $url ) ? 'saved' : 'invalid';
	wp_safe_redirect(
		add_query_arg(
			array(
				'page'               => CCMS_WIDGET_PAGE,
				'ccms-widget-status' => $status,
			),
			admin_url( 'options-general.php' )
		)
	);
	exit;
}

register_uninstall_hook( __FILE__, 'ccms_widget_uninstall' );

/**
 * Remove the plugin's one option when the plugin is deleted.
 */
function ccms_widget_uninstall() {
	delete_option( CCMS_WIDGET_OPTION );
}
