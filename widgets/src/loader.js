/* The ccms contact widget: the loader, all a shopper downloads before interacting (≤ 3 KB gzipped).
 *
 * <script async src=".../widget/v1/loader.js" data-shop-key="wk_..."></script>
 *
 * It draws the launcher (and the optional top bar) inside a Shadow DOM so the page's CSS cannot
 * reach it, and imports the panel on first interaction or when the browser is idle. It writes no
 * cookie and no storage. It relies on as little of the page's realm as it can, since a theme may
 * have replaced globals: no Array.prototype methods, no JSON global, no Object.assign; async/await
 * and response.json() use the engine's own Promise and parser, whatever window.Promise/JSON are.
 */
(() => {
  const doc = document;
  const win = window;
  const script = doc.currentScript;
  // Captured now: a page script may wrap or replace them later.
  const fetchNative = win.fetch;
  const idle = win.requestIdleCallback || win.setTimeout;

  if (!script || doc.querySelector('ccms-widget')) return; // no key, or already on the page
  const src = script.src.split('?')[0];
  const base = src.slice(0, src.lastIndexOf('/') + 1); // .../widget/v1/
  // data-shop-key, or ?shop_key= where a platform's script tag cannot carry attributes (ScriptTag API)
  const key = script.getAttribute('data-shop-key') ||
    decodeURIComponent((script.src.split('shop_key=')[1] || '').split('&')[0]);
  const api = base + encodeURIComponent(key) + '/';
  // build.py replaces the string below with {js, css, ko, en, ja}: the panel's hashed file names.
  const ASSETS = '__CCMS_ASSETS__';
  // The loader's own words (launcher, hide the top bar); the panel's come with the panel.
  const WORDS = {en: ['Contact us', 'Hide'], ko: ['고객센터 문의', '숨기기'], ja: ['お問い合わせ', '閉じる']};
  // :host wins over the page's !important rules (inner context wins for important declarations).
  // Every rule is scoped to the launcher (.l) or the top bar (.t): the panel shares this root.
  const CSS = ':host{all:initial!important;display:block!important;position:fixed!important;' +
    'z-index:2147483647!important;top:0!important;left:0!important;width:0!important;height:0!important}' +
    '.l,.t{position:fixed;margin:0;border:0;background:var(--bg);color:var(--fg);' +
    'font:14px/1.5 system-ui,sans-serif}' +
    '.l{right:20px;bottom:calc(var(--b) + env(safe-area-inset-bottom,0px));width:56px;height:56px;' +
    'padding:0;display:grid;place-items:center;border-radius:50%;cursor:pointer;' +
    'box-shadow:0 2px 10px #0006}' +
    '.left .l{left:20px;right:auto}.l svg{width:28px;height:28px;fill:currentColor}' +
    '.t{top:0;left:0;right:0;min-height:24px;padding:6px 48px 6px 16px}.t a{color:inherit;font-weight:700}' +
    '.t button{position:absolute;top:0;right:0;width:44px;height:36px;border:0;background:none;' +
    'color:inherit;font-size:20px;cursor:pointer}.t span{margin-left:12px}' +
    '.l:focus-visible,.t :focus-visible{outline:3px solid #111;outline-offset:2px;box-shadow:0 0 0 5px #fff}';

  const shadow = doc.createElement('ccms-widget').attachShadow({mode: 'open'});
  const sheets = [];
  let config = {};
  let lang;
  let launcher;
  let barStatus;
  let panel;
  let panelLoading;

  function el(tag, attrs, text) {
    const node = doc.createElement(tag);
    for (const name in attrs) node.setAttribute(name, attrs[name]);
    if (text) node.textContent = text;
    return node;
  }

  // A stylesheet built from text: allowed under a strict style-src, unlike <style> or style="".
  function addCss(text) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(text);
    sheets[sheets.length] = sheet;
    shadow.adoptedStyleSheets = sheets;
  }

  async function get(url, kind, signal) {
    const response = await fetchNative(url, {credentials: 'omit', signal});
    if (!response.ok) throw response.status;
    return response[kind]();
  }

  // The page's <html lang>, then the browser's languages, then the shop's default.
  function pickLanguage() {
    const wanted = [doc.documentElement.lang];
    const browser = navigator.languages || [];
    for (let i = 0; i < browser.length; i++) wanted[wanted.length] = browser[i];
    wanted[wanted.length] = (config.shop || {}).default_locale;
    for (let i = 0; i < wanted.length; i++) {
      const code = String(wanted[i]).slice(0, 2).toLowerCase();
      if (WORDS[code]) return code;
    }
    return 'en';
  }

  // ---- the panel, imported on demand ----

  function loadPanel() {
    if (!panelLoading) panelLoading = importPanel();
    return panelLoading;
  }

  async function importPanel() {
    const asset = (name) => base + 'assets/' + name;
    try {
      // The three downloads run side by side.
      const cssText = get(asset(ASSETS.css), 'text');
      const words = get(asset(ASSETS[lang]), 'json');
      const module = await import(asset(ASSETS.js));
      addCss(await cssText);
      panel = module.mount({shadow, launcher, config, lang, api, words: await words, fetch: fetchNative});
      if (barStatus) barStatus.textContent = panel.hours();
      return panel;
    } catch (error) {
      panelLoading = null; // a later interaction tries again
      throw error;
    }
  }

  // Loads the panel ahead of a likely click; on failure the click tries again.
  async function prefetch() {
    try {
      await ready;
      await loadPanel();
    } catch (error) { /* nothing to show yet */ }
  }

  async function open(options) {
    await ready;
    (await loadPanel()).open(options || {});
  }

  // ---- what the page shows before any interaction ----

  function icon() {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = doc.createElementNS(ns, 'svg');
    const path = doc.createElementNS(ns, 'path');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    path.setAttribute('d', 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z');
    svg.appendChild(path);
    return svg;
  }

  // The phone number on top of the page; the "open now" line joins it when the panel loads.
  function topBar(words, root) {
    const phone = (config.contact || {}).phone;
    const bar = el('div', {class: 't'});
    const hide = el('button', {type: 'button', 'aria-label': words[1]}, '×');
    barStatus = el('span');
    hide.addEventListener('click', () => bar.remove());
    bar.append(el('a', {href: 'tel:' + phone.replace(/[^0-9+]/g, '')}, phone), barStatus, hide);
    root.appendChild(bar);
  }

  function render() {
    lang = pickLanguage();
    const words = WORDS[lang];
    // A labelled landmark: the widget is page content a screen reader can find and skip.
    const root = el('aside', {'aria-label': words[0], lang});
    if (config.position === 'bottom-left') root.className = 'left';
    // Custom properties set through the style object: CSSOM, so CSP allows it.
    root.style.setProperty('--b', (config.offset_bottom >= 0 ? config.offset_bottom : 20) + 'px');
    root.style.setProperty('--bg', config.color || '#1f4fd1');
    root.style.setProperty('--fg', config.text_color || '#fff');
    if (config.top_bar && (config.contact || {}).phone) topBar(words, root);
    launcher = el('button', {type: 'button', class: 'l', 'aria-label': words[0],
                             'aria-haspopup': 'dialog', 'aria-expanded': 'false'});
    launcher.appendChild(icon());
    launcher.addEventListener('click', () => open());
    // Hover or focus means a click is likely: start fetching the panel now.
    launcher.addEventListener('pointerenter', prefetch);
    launcher.addEventListener('focus', prefetch);
    root.appendChild(launcher);
    shadow.appendChild(root);
    // Fixed positioning only, drawn once in its final place: nothing on the page moves.
    doc.documentElement.appendChild(shadow.host);
  }

  addCss(CSS);
  win.ccms = {open, close: () => panel && panel.close()};

  const timeout = new AbortController();
  win.setTimeout(() => timeout.abort(), 8000);
  const ready = (async () => {
    try {
      config = await get(api + 'config', 'json', timeout.signal);
    } catch (status) {
      // An unknown key shows nothing; a network hiccup still shows the launcher with defaults.
      if (status === 404) throw status;
    }
    render();
  })();

  // Fetch the panel once the page has loaded and the browser is idle, unless data is scarce.
  const whenIdle = () => idle(prefetch);
  if (!(navigator.connection || {}).saveData) {
    if (doc.readyState === 'complete') whenIdle();
    else win.addEventListener('load', whenIdle);
  }
})();
