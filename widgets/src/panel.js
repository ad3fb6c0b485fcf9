/* The ccms contact widget: the panel, imported by the loader on first interaction or when idle.
 *
 * A modal <dialog> (top layer: no z-index fight with the page) inside the loader's Shadow DOM with
 * its views: how to reach a person, a message form, "where is my order?", "my requests" and, when
 * the merchant runs guarantee programs (config.programs), a claim form per guarantee.
 * Shopper and server text is only ever set as text nodes. Like the loader it avoids what a theme
 * may have replaced: no Array.prototype methods, no JSON global, no for...of over arrays.
 */

const KINDS = ['complaint', 'inquiry', 'suggestion', 'praise'];
// Field names in the order POST voc takes them (docs/widget-api.md).
const VOC_FIELDS = ['kind', 'category', 'message', 'order_number', 'name', 'email', 'phone',
                    'locale', 'consent', 'token', 'website'];
// The guarantees a shopper may claim, and the fields POST claims takes (lines left out: every
// line the guarantee covers; the message says which item when it matters).
const CLAIM_KINDS = ['free_return', 'buyback'];
const CLAIM_FIELDS = ['program', 'order_number', 'contact', 'message', 'event', 'event_date',
                      'conditions_accepted', 'evidence', 'locale', 'token', 'website'];
// Links the merchant configured are only followed with these schemes (never javascript:).
const SAFE_URL = /^(https?|mailto|tel|kakaoplus|line):/i;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
// The API refuses a form token younger than this (minimum fill time against bots).
const TOKEN_MIN_AGE_MS = 3100;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const name in attrs) {
    const value = attrs[name];
    if (value === true) node.setAttribute(name, '');
    else if (value != null && value !== false) node.setAttribute(name, value);
  }
  for (let i = 0; i < children.length; i++) {
    if (children[i] != null && children[i] !== false) node.append(children[i]); // strings become text nodes
  }
  return node;
}

function quote(text) {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 34 || code === 92) {
      out += '\\' + text[i];
    } else if (code < 32 || (code >= 0xd800 && code < 0xe000)) {
      // Control characters and surrogate halves are escaped, so even a lone half stays valid JSON.
      out += '\\u' + (code + 0x10000).toString(16).slice(1);
    } else {
      out += text[i];
    }
  }
  return out + '"';
}

// A flat JSON object of strings and booleans, written without the page's JSON global.
function jsonBody(values, names) {
  let out = '';
  for (let i = 0; i < names.length; i++) {
    const value = values[names[i]];
    if (value === undefined || value === '') continue;
    const json = typeof value === 'string' ? quote(value) : String(!!value);
    out += (out ? ',' : '') + quote(names[i]) + ':' + json;
  }
  return '{' + out + '}';
}

// The engine's own Promise, whatever the page did to window.Promise.
const NativePromise = (async () => {})().constructor;

function wait(ms) {
  return new NativePromise((resolve) => window.setTimeout(resolve, ms));
}

function includes(list, item) {
  for (let i = 0; i < list.length; i++) if (list[i] === item) return true;
  return false;
}

// ---- opening hours, from config.hours in the shop's time zone ----

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

// The shop's wall clock at `time`, as numbers.
function wallClock(time, zone) {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric',
    hour: 'numeric', minute: 'numeric',
  }).formatToParts(time);
  const clock = {};
  for (let i = 0; i < parts.length; i++) clock[parts[i].type] = +parts[i].value;
  return clock;
}

// The instant at which the shop's clock shows `wall` (a wall time written as UTC milliseconds).
// Two rounds settle the zone's offset, DST changes included.
function instantOf(wall, zone) {
  let time = wall;
  for (let round = 0; round < 2; round++) {
    const c = wallClock(time, zone);
    time = wall - (Date.UTC(c.year, c.month - 1, c.day, c.hour, c.minute) - time);
  }
  return time;
}

function minutes(hhmm) {
  return +hhmm.slice(0, 2) * 60 + +hhmm.slice(3, 5);
}

// {open: true, until} or {open: false, next?} (instants); null when the shop set no hours.
export function hoursStatus(hours, now) {
  const zone = hours.timezone || 'UTC';
  const weekly = hours.weekly || {};
  const holidays = hours.holidays || [];
  const c = wallClock(now, zone);
  const today = Date.UTC(c.year, c.month - 1, c.day);
  const current = c.hour * 60 + c.minute;
  let known = false;
  for (let day = 0; day < 15; day++) {
    const date = today + day * 864e5;
    const spans = weekly[DAYS[new Date(date).getUTCDay()]] || [];
    const closed = includes(holidays, new Date(date).toISOString().slice(0, 10));
    let next = -1;
    for (let i = 0; i < spans.length; i++) {
      known = true;
      const start = minutes(spans[i][0]);
      const end = minutes(spans[i][1]);
      if (closed || (day === 0 && end <= current)) continue;
      if (day === 0 && start <= current) return {open: true, until: instantOf(date + end * 6e4, zone)};
      if (next < 0 || start < next) next = start;
    }
    if (next >= 0) return {open: false, next: instantOf(date + next * 6e4, zone)};
  }
  return known ? {open: false} : null;
}

export function mount(ctx) {
  const {shadow, launcher, config, lang, words, api} = ctx;
  const fetchNative = ctx.fetch;
  const contact = config.contact || {};
  const fallbackLang = (config.shop || {}).default_locale;
  const views = {};
  const forms = {};
  let dialog;
  let hoursNode;
  let closedNote;
  let token = '';
  let tokenAt = 0;

  function t(key, vars) {
    const fill = (match, name) => (vars && name in vars ? vars[name] : match);
    return (words[key] || key).replace(/\{(\w+)\}/g, fill);
  }

  // A merchant text in the shopper's language, else the shop's, else any.
  function localized(texts) {
    if (!texts) return '';
    if (texts[lang]) return texts[lang];
    if (texts[fallbackLang]) return texts[fallbackLang];
    for (const code in texts) return texts[code];
    return '';
  }

  // A moment in the shopper's own time zone: the time alone when it is today.
  function when(time) {
    const date = new Date(time);
    const options = {hour: 'numeric', minute: '2-digit'};
    if (date.toDateString() !== new Date().toDateString()) options.weekday = 'short';
    return new Intl.DateTimeFormat(lang, options).format(date);
  }

  function dateTime(iso) {
    return new Intl.DateTimeFormat(lang, {dateStyle: 'medium', timeStyle: 'short'}).format(new Date(iso));
  }

  // ---- talking to the API ----

  async function refreshToken() {
    token = '';
    try {
      const response = await fetchNative(api + 'token', {credentials: 'omit', cache: 'no-store'});
      if (response.ok) {
        token = (await response.json()).token || '';
        tokenAt = Date.now();
      }
    } catch (error) { /* the submission reports the missing token */ }
  }

  async function post(path, body) {
    const response = await fetchNative(api + path, {
      method: 'POST', credentials: 'omit', body,
      headers: {'Content-Type': 'application/json', 'X-CCMS-Widget': '1'},
    });
    let data = {};
    try {
      data = await response.json();
    } catch (error) { /* an empty or non-JSON answer: the status says enough */ }
    return {status: response.status, data, retryAfter: +response.headers.get('Retry-After') || 60};
  }

  // A sentence for an answer that is not about one field.
  function failure(result) {
    if (result.status === 429) return t('errRate', {n: Math.max(1, Math.ceil(result.retryAfter / 60))});
    if (result.status === 413) return t('errLarge');
    return t('errGeneric');
  }

  // A status word (order, payment, request) in the shopper's language, else as the API said it.
  function label(prefix, word) {
    return words[prefix + word] || word || '';
  }

  function fieldErrors(result) {
    const fields = (result.data.error || {}).fields || {};
    return fields.json || fields;
  }

  // A form token old enough for the API's minimum fill time.
  async function ripeToken() {
    if (!token) await refreshToken();
    const age = Date.now() - tokenAt;
    if (age < TOKEN_MIN_AGE_MS) await wait(TOKEN_MIN_AGE_MS - age);
    return token;
  }

  // A 422 shown next to the fields; a refused form token is renewed for the next try.
  async function serverErrors(form, result, adjust) {
    const fields = fieldErrors(result);
    if (fields.token) {
      await refreshToken(); // expired or refused: a fresh one for the next try
      return say(form, t('errToken'), true);
    }
    const problems = {};
    for (const name in fields) problems[name] = words['err_' + name] || t('errField');
    if (adjust) adjust(fields, problems);
    if (!showErrors(form, problems)) say(form, t('errGeneric'), true);
  }

  // ---- building blocks ----

  function link(href, text, external) {
    if (!SAFE_URL.test(href)) return null;
    const a = el('a', {href}, text);
    if (external) {
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.append(el('span', {class: 'sr'}, ' ' + t('newTab')));
    }
    return a;
  }

  function hoursText() {
    const status = config.hours && hoursStatus(config.hours, Date.now());
    if (!status) return {text: '', open: true};
    const shopperZone = new Intl.DateTimeFormat().resolvedOptions().timeZone;
    const yours = shopperZone !== config.hours.timezone ? ' ' + t('yourTime') : '';
    if (status.open) return {text: t('openUntil', {t: when(status.until)}) + yours, open: true};
    if (status.next) return {text: t('closedOpens', {t: when(status.next)}) + yours, open: false};
    return {text: t('closedNow'), open: false};
  }

  // Each view: a heading that takes focus when the view is shown, a back button, its content.
  function view(name, title, ...content) {
    const heading = el('h3', {tabindex: '-1'}, title);
    const back = name === 'home' ? null : el('button', {type: 'button', class: 'back'}, t('back'));
    if (back) back.addEventListener('click', () => show('home'));
    const section = el('section', {hidden: name !== 'home', 'aria-label': title}, back, heading);
    for (let i = 0; i < content.length; i++) if (content[i]) section.append(content[i]);
    views[name] = {section, heading};
    return section;
  }

  function show(name) {
    for (const key in views) views[key].section.hidden = key !== name;
    views[name].heading.focus();
  }

  // A labelled control with its hint and its error line, wired by aria-describedby.
  function field(form, name, label, control, hint) {
    const id = form.node.id + '-' + name;
    control.id = id;
    control.name = name;
    const error = el('p', {class: 'err', id: id + '-err', hidden: true});
    const hintNode = hint ? el('p', {class: 'hint', id: id + '-hint'}, hint) : null;
    if (hintNode) control.setAttribute('aria-describedby', hintNode.id);
    form.fields[name] = {control, error, hint: hintNode};
    const labelNode = el('label', {for: id}, label);
    if (control.type === 'checkbox') return el('div', {class: 'f box'}, control, labelNode, error);
    return el('div', {class: 'f'}, labelNode, control, hintNode, error);
  }

  function input(type, attrs) {
    const node = el('input', attrs);
    node.type = type;
    return node;
  }

  // The honeypot: off-screen and hidden from assistive technology; only bots fill it in.
  function honeypot(form) {
    const trap = input('text', {id: form.node.id + '-website', name: 'website', tabindex: '-1',
                                autocomplete: 'off'});
    form.honeypot = trap;
    return el('div', {class: 'hp', 'aria-hidden': 'true'}, el('label', {for: trap.id}, 'Website'), trap);
  }

  // A form with its fields, its live status line, its submit button and a place for results.
  function newForm(id, submitLabel, onSubmit) {
    const form = {
      node: el('form', {id, novalidate: true}),
      fields: {},
      status: el('div', {role: 'status', class: 'status'}),
      submit: el('button', {type: 'submit', class: 'primary'}, submitLabel),
      result: el('div', {class: 'result'}),
    };
    form.node.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (form.submit.disabled) return;
      form.submit.disabled = true;
      form.submit.textContent = t('sending');
      try {
        await onSubmit(form);
      } catch (error) {
        say(form, t('errNetwork'), true);
      } finally {
        form.submit.disabled = false;
        form.submit.textContent = submitLabel;
      }
    });
    return form;
  }

  function say(form, text, isError) {
    form.status.className = isError ? 'status bad' : 'status';
    form.status.replaceChildren(text ? el('p', {}, text) : '');
  }

  function clearErrors(form) {
    for (const name in form.fields) {
      const {control, error, hint} = form.fields[name];
      error.hidden = true;
      error.textContent = '';
      control.removeAttribute('aria-invalid');
      if (hint) control.setAttribute('aria-describedby', hint.id);
      else control.removeAttribute('aria-describedby');
    }
    say(form, '');
  }

  // Shows each message next to its field and moves focus to the first one.
  function showErrors(form, problems) {
    let first = null;
    for (const name in problems) {
      const entry = form.fields[name];
      if (!entry) continue;
      entry.error.textContent = problems[name];
      entry.error.hidden = false;
      entry.control.setAttribute('aria-invalid', 'true');
      const described = (entry.hint ? entry.hint.id + ' ' : '') + entry.error.id;
      entry.control.setAttribute('aria-describedby', described);
      first = first || entry.control;
    }
    if (first) {
      say(form, t('errCheck'), true);
      first.focus();
    }
    return !!first;
  }

  function value(form, name) {
    const entry = form.fields[name];
    if (!entry) return undefined;
    const control = entry.control;
    return control.type === 'checkbox' ? control.checked : control.value.trim();
  }

  // ---- home: reach a person ----

  function homeView() {
    hoursNode = el('p', {class: 'hours'});
    const reach = el('ul', {class: 'reach'});
    const add = (node) => node && reach.append(el('li', {}, node));
    if (contact.phone) {
      add(link('tel:' + contact.phone.replace(/[^0-9+]/g, ''), t('call', {phone: contact.phone})));
    }
    if (contact.email) add(link('mailto:' + contact.email, t('email', {email: contact.email})));
    if (contact.kakao_channel_url) add(link(contact.kakao_channel_url, t('kakao'), true));
    if (contact.chat_url) add(link(contact.chat_url, t('chat'), true));
    const links = contact.links || [];
    for (let i = 0; i < links.length; i++) add(link(links[i].url, links[i].label, true));

    const menu = el('div', {class: 'menu'});
    const entry = (label, action) => {
      const button = el('button', {type: 'button'}, label);
      button.addEventListener('click', action);
      menu.append(button);
    };
    entry(t('problem'), () => startMessage({kind: 'complaint'}));
    entry(t('question'), () => startMessage({kind: 'inquiry'}));
    entry(t('idea'), () => startMessage({kind: 'suggestion'}));
    entry(t('whereOrder'), () => show('order'));
    entry(t('myRequests'), () => show('requests'));
    // The shop's guarantees, each opening its terms and claim form.
    const guarantees = el('div', {class: 'menu'});
    for (let i = 0; i < claimKinds.length; i++) {
      const kind = claimKinds[i];
      const button = el('button', {type: 'button'}, claims[kind].program.name || t('kind_claim'));
      button.addEventListener('click', () => startClaim({program: kind}));
      guarantees.append(button);
    }
    return view('home', t('reachTitle'), hoursNode, reach.firstChild ? reach : null, menu,
                claimKinds.length ? el('h4', {}, t('guarantees')) : null,
                claimKinds.length ? guarantees : null);
  }

  // ---- the message form ----

  let messageForm;
  let receipt;

  function messageView() {
    const form = newForm('ccms-msg', t('send'), sendMessage);
    messageForm = form;
    closedNote = el('p', {class: 'note', hidden: true});

    const kinds = el('fieldset', {class: 'kinds'}, el('legend', {}, t('kind')));
    for (let i = 0; i < KINDS.length; i++) {
      const radio = input('radio', {id: 'ccms-kind-' + KINDS[i], name: 'kind', value: KINDS[i]});
      kinds.append(el('div', {class: 'radio'}, radio, el('label', {for: radio.id}, t('kind_' + KINDS[i]))));
    }
    form.node.append(kinds);

    const categories = config.categories || [];
    if (categories.length) {
      const select = el('select', {}, el('option', {value: ''}, t('choose')));
      for (let i = 0; i < categories.length; i++) {
        const text = localized(categories[i].labels) || categories[i].key;
        select.append(el('option', {value: categories[i].key}, text));
      }
      form.node.append(field(form, 'category', t('category'), select));
    }
    form.node.append(
      field(form, 'message', t('message'), el('textarea', {rows: '5', maxlength: '5000', required: true})),
      field(form, 'order_number', t('orderOptional'),
            input('text', {maxlength: '64', autocomplete: 'off'})),
      field(form, 'name', t('nameOptional'), input('text', {maxlength: '200', autocomplete: 'name'})),
      field(form, 'email', t('email_label'), input('email', {maxlength: '320', autocomplete: 'email'}),
            t('contactHint')),
      field(form, 'phone', t('phone_label'), input('tel', {maxlength: '30', autocomplete: 'tel'})),
    );
    const consentText = localized(config.consent_text);
    if (consentText) form.node.append(field(form, 'consent', consentText, input('checkbox', {})));
    form.node.append(honeypot(form), form.submit);

    receipt = el('div', {class: 'receipt', hidden: true});
    return view('message', t('messageTitle'), closedNote, form.node, form.status, receipt);
  }

  function startMessage(options) {
    const form = messageForm;
    form.node.hidden = false;
    receipt.hidden = true;
    const kind = includes(KINDS, options.kind) ? options.kind : 'complaint';
    form.node.querySelector('#ccms-kind-' + kind).checked = true;
    if (options.order) form.fields.order_number.control.value = String(options.order);
    if (options.text) form.fields.message.control.value = String(options.text);
    show('message');
  }

  function checkMessage(form) {
    const problems = {};
    const email = value(form, 'email');
    const phone = value(form, 'phone');
    if (!value(form, 'message')) problems.message = t('errMessage');
    if (!email && !phone) problems.email = t('errContact');
    else if (email && !EMAIL.test(email)) problems.email = t('errEmail');
    if (form.fields.consent && !value(form, 'consent')) problems.consent = t('errConsent');
    return problems;
  }

  async function sendMessage(form) {
    clearErrors(form);
    if (showErrors(form, checkMessage(form))) return;
    const values = {
      kind: form.node.querySelector('input[name=kind]:checked').value, locale: lang,
      token: await ripeToken(), website: form.honeypot.value,
    };
    for (const name in form.fields) values[name] = value(form, name);
    const result = await post('voc', jsonBody(values, VOC_FIELDS));
    if (result.status === 201) return showReceipt(form, result.data);
    if (result.status !== 422) return say(form, failure(result), true);
    await serverErrors(form, result, (fields, problems) => {
      if (fields.email && fields.phone && !values.email && !values.phone) {
        problems.email = t('errContact'); // one message for "give one of the two", on the first
        delete problems.phone;
      }
    });
  }

  // When the shop answers: by the due time the API gave, else within the promised hours.
  function promise(data) {
    const hours = data.ack_promise_hours || config.ack_promise_hours || 24;
    return data.ack_due_at ? t('promiseBy', {n: hours, t: when(Date.parse(data.ack_due_at))})
                           : t('promise', {n: hours});
  }

  // The reference at once, in the form's live region (screen readers announce it); focus on its
  // first line. The form is hidden behind it and reset.
  function receiptOf(form, thanks, data, ...middle) {
    const heading = el('p', {class: 'big', tabindex: '-1'}, thanks);
    form.status.className = 'status';
    form.status.replaceChildren(
      heading,
      el('p', {}, t('yourRef'), ' ', el('strong', {class: 'ref'}, String(data.reference || ''))));
    for (let i = 0; i < middle.length; i++) if (middle[i]) form.status.append(middle[i]);
    form.status.append(el('p', {}, promise(data)), el('p', {class: 'hint'}, t('keepRef')));
    form.node.reset();
    form.node.hidden = true;
    heading.focus();
    refreshToken();
  }

  function showReceipt(form, data) {
    const again = el('button', {type: 'button'}, t('another'));
    again.addEventListener('click', () => {
      say(form, '');
      startMessage({kind: 'complaint'});
    });
    receipt.replaceChildren(again);
    receipt.hidden = false;
    receiptOf(form, t('thanks'), data);
  }

  // ---- where is my order? ----

  function orderView() {
    const form = newForm('ccms-order', t('find'), findOrder);
    form.node.append(
      field(form, 'order_number', t('orderNumber'),
            input('text', {maxlength: '64', required: true, autocomplete: 'off'})),
      field(form, 'contact', t('checkoutContact'),
            input('text', {maxlength: '320', required: true, autocomplete: 'email'})),
      form.submit,
    );
    forms.order = form;
    return view('order', t('whereOrder'), form.node, form.status, form.result);
  }

  function requireAll(form, names) {
    const problems = {};
    for (let i = 0; i < names.length; i++) {
      if (!value(form, names[i])) problems[names[i]] = t('errRequired');
    }
    return showErrors(form, problems);
  }

  async function lookup(form, path, names, notFound, render) {
    clearErrors(form);
    form.result.replaceChildren();
    if (requireAll(form, names)) return;
    const values = {};
    for (let i = 0; i < names.length; i++) values[names[i]] = value(form, names[i]);
    const result = await post(path, jsonBody(values, names));
    if (result.status === 200) {
      form.result.replaceChildren(render(result.data));
      say(form, t('found'));
    } else if (result.status === 404) {
      say(form, notFound, true);
    } else if (result.status === 422) {
      const problems = {};
      for (const name in fieldErrors(result)) problems[name] = t('errField');
      if (!showErrors(form, problems)) say(form, t('errGeneric'), true);
    } else {
      say(form, failure(result), true);
    }
  }

  function findOrder(form) {
    return lookup(form, 'orders/lookup', ['order_number', 'contact'], t('orderNotFound'), renderOrder);
  }

  function row(list, term, detail) {
    if (detail) list.append(el('dt', {}, term), el('dd', {}, detail));
  }

  function renderOrder(data) {
    const order = data.order || {};
    const facts = el('dl', {});
    row(facts, t('orderStatus'), label('ful_', order.fulfillment_status));
    row(facts, t('payment'), label('fin_', order.financial_status));
    row(facts, t('placed'), order.placed_at && dateTime(order.placed_at));
    if (order.total && order.currency) {
      const money = new Intl.NumberFormat(lang, {style: 'currency', currency: order.currency});
      row(facts, t('total'), money.format(+order.total));
    }
    const lines = el('ul', {class: 'lines'});
    const items = order.lines || [];
    for (let i = 0; i < items.length; i++) {
      lines.append(el('li', {}, t('line', {title: items[i].title, n: items[i].quantity})));
    }
    return el('div', {}, el('h4', {}, t('orderHeading', {number: order.number || ''})), facts,
              items.length ? lines : null);
  }

  // ---- my requests ----

  function requestsView() {
    const form = newForm('ccms-req', t('showStatus'), findRequest);
    form.node.append(
      field(form, 'reference', t('reference'),
            input('text', {maxlength: '32', required: true, autocomplete: 'off'}), t('referenceHint')),
      field(form, 'contact', t('requestContact'),
            input('text', {maxlength: '320', required: true, autocomplete: 'email'})),
      form.submit,
    );
    return view('requests', t('myRequests'), form.node, form.status, form.result);
  }

  function findRequest(form) {
    return lookup(form, 'requests/lookup', ['reference', 'contact'], t('requestNotFound'), renderRequest);
  }

  function renderRequest(data) {
    const request = data.request || {};
    const facts = el('dl', {});
    row(facts, t('kind'), label('kind_', request.kind));
    row(facts, t('status'), label('st_', request.status));
    row(facts, t('sent'), request.created_at && dateTime(request.created_at));
    const history = el('ol', {class: 'timeline'});
    const steps = request.timeline || [];
    for (let i = 0; i < steps.length; i++) {
      const at = el('span', {class: 'hint'}, ' · ' + dateTime(steps[i].at));
      history.append(el('li', {}, label('st_', steps[i].status), at));
    }
    return el('div', {}, el('h4', {}, String(request.reference || '')), facts,
              steps.length ? el('h5', {}, t('history')) : null, steps.length ? history : null);
  }

  // ---- guarantee claims (free return, buyback) ----

  // One per kind the API takes, in the order the shop lists them.
  const claims = {};
  const claimKinds = [];
  const programs = config.programs || [];
  for (let i = 0; i < programs.length; i++) {
    const kind = programs[i].kind;
    if (includes(CLAIM_KINDS, kind) && !claims[kind]) {
      claims[kind] = {program: programs[i]};
      claimKinds[claimKinds.length] = kind;
    }
  }

  function list(items, text) {
    const node = el('ul', {class: 'lines'});
    for (let i = 0; i < items.length; i++) node.append(el('li', {}, text ? text(items[i]) : items[i]));
    return node;
  }

  function today() {
    const now = new Date();
    const two = (n) => (n < 10 ? '0' : '') + n;
    return now.getFullYear() + '-' + two(now.getMonth() + 1) + '-' + two(now.getDate());
  }

  // The terms in plain words: the window, the events, the conditions, the proof asked for.
  function termsOf(program) {
    const events = program.events || [];
    const conditions = program.conditions || [];
    const evidence = program.evidence_required || [];
    const span = program.window_days ? t('days', {n: program.window_days})
      : program.window_months ? t('months', {n: program.window_months}) : '';
    const eventLabel = (event) => localized(event.labels) || event.code;
    return el('div', {class: 'terms'},
      span ? el('p', {}, t('terms_' + program.kind, {w: span})) : null,
      program.kind === 'buyback' && events.length ? list(events, eventLabel) : null,
      conditions.length ? el('p', {}, t('conditions')) : null,
      conditions.length ? list(conditions) : null,
      evidence.length ? el('p', {}, t('evidenceAsked')) : null,
      evidence.length ? list(evidence) : null,
      el('p', {class: 'hint'}, t('claimHint')));
  }

  function claimView(kind) {
    const claim = claims[kind];
    const program = claim.program;
    const form = newForm('ccms-claim-' + kind, t('claimSend'), sendClaim);
    form.kind = kind;
    claim.form = form;
    form.node.append(
      field(form, 'order_number', t('orderNumber'),
            input('text', {maxlength: '64', required: true, autocomplete: 'off'})),
      field(form, 'contact', t('checkoutContact'),
            input('text', {maxlength: '320', required: true, autocomplete: 'email'})));
    if (kind === 'buyback') {
      const events = program.events || [];
      const select = el('select', {required: true}, el('option', {value: ''}, t('chooseEvent')));
      for (let i = 0; i < events.length; i++) {
        select.append(el('option', {value: events[i].code},
                         localized(events[i].labels) || events[i].code));
      }
      form.node.append(
        field(form, 'event', t('event'), select),
        field(form, 'event_date', t('eventDate'), input('date', {required: true, max: today()})),
        field(form, 'evidence', t('evidence'), el('textarea', {rows: '3', maxlength: '5000'}),
              t('evidenceHint')));
    }
    if ((program.conditions || []).length) {
      form.node.append(field(form, 'conditions_accepted', t('accept'), input('checkbox', {})));
    }
    form.node.append(
      field(form, 'message', t('message'), el('textarea', {rows: '4', maxlength: '5000', required: true}),
            t('claimMessageHint')),
      honeypot(form), form.submit);
    return view('claim-' + kind, program.name || t('kind_claim'), termsOf(program), form.node,
                form.status);
  }

  // The guarantee named (none named: the shop's first); one the shop does not run: the home view.
  function startClaim(options) {
    const claim = claims[options.program || claimKinds[0]];
    if (!claim) return show('home');
    const form = claim.form;
    clearErrors(form);
    form.node.hidden = false;
    if (options.order) form.fields.order_number.control.value = String(options.order);
    if (options.text) form.fields.message.control.value = String(options.text);
    if (form.fields.event_date) form.fields.event_date.control.max = today();
    show('claim-' + form.kind);
  }

  function checkClaim(form) {
    const problems = {};
    const names = ['order_number', 'contact', 'event', 'event_date', 'message'];
    for (let i = 0; i < names.length; i++) {
      if (form.fields[names[i]] && !value(form, names[i])) problems[names[i]] = t('errRequired');
    }
    if (problems.event) problems.event = t('err_event');
    const date = value(form, 'event_date');
    if (problems.event_date || date > today()) problems.event_date = t('err_event_date');
    if (problems.message) problems.message = t('errMessage');
    return problems;
  }

  async function sendClaim(form) {
    clearErrors(form);
    if (showErrors(form, checkClaim(form))) return;
    const values = {program: form.kind, locale: lang, token: await ripeToken(),
                    website: form.honeypot.value};
    for (const name in form.fields) values[name] = value(form, name);
    const result = await post('claims', jsonBody(values, CLAIM_FIELDS));
    if (result.status === 201) return showClaimReceipt(form, result.data);
    // The same words as "where is my order?": an unknown order and a wrong contact look alike.
    if (result.status === 404) return say(form, t('orderNotFound'), true);
    if (result.status !== 422) return say(form, failure(result), true);
    await serverErrors(form, result);
  }

  // Inside the terms: the shop confirms the next steps. Outside: a person still looks at it,
  // with the reasons in plain words (those the shopper can act on or understand).
  function showClaimReceipt(form, data) {
    const why = el('ul', {class: 'lines'});
    const reasons = data.reasons || [];
    const seen = {};
    for (let i = 0; i < reasons.length; i++) {
      const text = words['why_' + String(reasons[i]).split(':')[0]];
      if (text && !seen[text]) why.append(el('li', {}, text));
      seen[text] = true;
    }
    receiptOf(form, t('claimThanks'), data,
              el('p', {}, t(data.eligible ? 'claimIn' : 'claimOut')),
              !data.eligible && why.firstChild ? why : null);
  }

  // ---- the dialog ----

  function focusables() {
    const found = dialog.querySelectorAll('a[href],button,input,select,textarea');
    const usable = [];
    for (let i = 0; i < found.length; i++) {
      const node = found[i];
      const reachable = !node.disabled && node.tabIndex >= 0 && node.getClientRects().length;
      if (reachable) usable[usable.length] = node;
    }
    return usable;
  }

  // Tab and Shift+Tab wrap around inside the dialog, also from a focused heading past either end.
  function trapTab(event) {
    if (event.key !== 'Tab') return;
    const items = focusables();
    const active = shadow.activeElement;
    if (!items.length || !active) return;
    const first = items[0];
    const last = items[items.length - 1];
    const before = (a, b) => a !== b && !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
    if (event.shiftKey && (active === first || before(active, first))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (active === last || before(last, active))) {
      event.preventDefault();
      first.focus();
    }
  }

  function build() {
    const title = el('h2', {id: 'ccms-title'}, t('title', {shop: (config.shop || {}).name || ''}));
    const closeButton = el('button', {type: 'button', class: 'x', 'aria-label': t('close')}, '×');
    closeButton.addEventListener('click', close);
    dialog = el('dialog', {class: config.position === 'bottom-left' ? 'p left' : 'p',
                           'aria-modal': 'true', 'aria-labelledby': title.id},
      el('div', {class: 'in'},
        el('div', {class: 'hd'}, title, closeButton),
        el('div', {class: 'bd'}, homeView(), messageView(), orderView(), requestsView())));
    const body = dialog.querySelector('.bd');
    for (let i = 0; i < claimKinds.length; i++) body.append(claimView(claimKinds[i]));
    dialog.addEventListener('keydown', trapTab);
    // A click on the backdrop lands on the dialog itself (its content fills the box).
    dialog.addEventListener('click', (event) => { if (event.target === dialog) close(); });
    // Escape (the dialog's own cancel) and close() both end here.
    dialog.addEventListener('close', () => {
      launcher.setAttribute('aria-expanded', 'false');
      launcher.focus();
    });
    launcher.parentNode.appendChild(dialog);
  }

  function refreshHours() {
    const hours = hoursText();
    hoursNode.textContent = hours.text;
    hoursNode.className = hours.open ? 'hours open' : 'hours';
    hoursNode.hidden = !hours.text;
    closedNote.hidden = hours.open;
    closedNote.textContent = hours.open ? '' : hours.text + ' ' + t('closedTakeMessage');
  }

  function open(options) {
    if (!dialog) build();
    refreshHours();
    if (!token) refreshToken();
    if (!dialog.open) dialog.showModal();
    launcher.setAttribute('aria-expanded', 'true');
    if (includes(KINDS, options.kind)) return startMessage(options);
    if (options.kind === 'claim') return startClaim(options);
    if (options.kind === 'order') {
      if (options.order) forms.order.fields.order_number.control.value = String(options.order);
      return show('order');
    }
    show(options.kind === 'requests' ? 'requests' : 'home');
  }

  function close() {
    if (dialog && dialog.open) dialog.close();
  }

  return {open, close, hours: () => hoursText().text};
}
