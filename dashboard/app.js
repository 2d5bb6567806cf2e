// Understudy dashboard: plain JavaScript, no build step, nothing from outside this controller.
// Reads GET /v1/status (every second and after every event), follows GET /v1/events/stream
// (Server-Sent Events, resumed with Last-Event-ID), and acts through the same API as the CLI.
// The API token, when the API has one, is asked of the operator and kept in this tab only.
'use strict';

const TOKEN_KEY = 'understudy-token';
const TIMELINE_MAX = 300;
const state = {
  status: null,
  lastEventId: 0,
  backups: new Map(), // site → { vault, points } | { error }
  runbooks: new Map(), // runbook id → { id, site, kind, steps: [{ step, phase, ms, error }], done }
  lastRefresh: 0,
};

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}
function authHeaders() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, body) {
  const init = { headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (res.status === 401) {
    askToken();
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: `HTTP_${res.status}`, message: String(text).slice(0, 300) };
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}
function time(at) {
  return new Date(at).toLocaleTimeString([], { hour12: false });
}
function ago(at) {
  const s = Math.max(0, Math.round((Date.now() - at) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}
function bytes(n) {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${Math.max(1, Math.round(n / 1024))} KiB`;
}

function notice(text, kind) {
  const el = h('div', { class: `notice ${kind || ''}`, 'data-test': 'notice' }, text);
  document.getElementById('notices').prepend(el);
  setTimeout(() => el.remove(), kind === 'error' ? 20_000 : 10_000);
}

// ------------------------------------------------------------------ token

let tokenAsked = false;
function askToken() {
  if (tokenAsked) return;
  tokenAsked = true;
  const dlg = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  input.value = '';
  dlg.addEventListener(
    'close',
    () => {
      tokenAsked = false;
      if (dlg.returnValue === 'ok' && input.value.trim()) {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        refresh().then(refreshBackups);
      }
    },
    { once: true },
  );
  dlg.showModal();
  input.focus();
}

// ------------------------------------------------------------------ confirmation

/** Asks the operator; resolves to the field values on Confirm, null on Cancel. */
function confirmAction(title, text, fields) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const box = document.getElementById('confirm-fields');
  box.replaceChildren(...(fields || []).map((f) => f.el));
  return new Promise((resolve) => {
    dlg.addEventListener(
      'close',
      () => {
        if (dlg.returnValue !== 'ok') return resolve(null);
        const values = {};
        for (const f of fields || []) values[f.name] = f.value();
        resolve(values);
      },
      { once: true },
    );
    dlg.returnValue = '';
    dlg.showModal();
  });
}

function selectField(name, label, options) {
  const sel = h(
    'select',
    { name, 'data-test': `field-${name}` },
    options.map((o) => h('option', { value: o.value }, o.label)),
  );
  return { name, el: h('label', {}, label, ' ', sel), value: () => sel.value };
}
function checkField(name, label) {
  const box = h('input', { type: 'checkbox', name, 'data-test': `field-${name}` });
  return { name, el: h('label', { class: 'check' }, box, ' ', label), value: () => box.checked };
}
function textField(name, label, placeholder) {
  const input = h('input', { type: 'text', name, placeholder, 'data-test': `field-${name}` });
  return { name, el: h('label', {}, label, ' ', input), value: () => input.value.trim() };
}

async function runAction(what, path, body) {
  notice(`${what}: started…`, 'info');
  try {
    const r = await api(path, body);
    const status = r && r.status ? r.status : 'done';
    notice(`${what}: ${r && r.runbook ? `runbook #${r.runbook} ` : ''}${status}`, status === 'done' || status === 'on' || status === 'off' ? 'ok' : 'error');
  } catch (e) {
    notice(`${what}: refused — ${e.message}${e.code ? ` [${e.code}]` : ''}`, 'error');
  }
  refresh();
}

function siteHosts(site) {
  const st = state.status;
  return st ? st.hosts.filter((x) => x.name !== site.primary.host) : [];
}

async function onSwitchover(site) {
  const hosts = siteHosts(site);
  const f = selectField(
    'to',
    'to host',
    hosts.map((x) => ({ value: x.name, label: `${x.name} (${x.storage}, ${x.power})` })),
  );
  const v = await confirmAction(
    `Switch ${site.name} over`,
    `Planned move of ${site.name} off ${site.primary.host}: requests are held, nothing is lost. The API refuses a host that cannot take it.`,
    [f],
  );
  if (v) await runAction(`switchover of ${site.name} to ${v.to}`, `/v1/sites/${encodeURIComponent(site.name)}/switchover`, { to: v.to });
}

async function onFailover(site) {
  const hosts = siteHosts(site);
  const f = selectField('to', 'to host', [
    { value: '', label: 'let the controller choose' },
    ...hosts.map((x) => ({ value: x.name, label: `${x.name} (${x.storage}, ${x.power})` })),
  ]);
  const force = checkField('force', 'force: go on even if the old host cannot be confirmed off');
  const v = await confirmAction(
    `Fail ${site.name} over now`,
    `Unplanned move: ${site.primary.host} is powered off (fenced) and ${site.name}'s replica is promoted elsewhere. Writes not yet replicated may be lost in async mode.`,
    [f, force],
  );
  if (v)
    await runAction(`failover of ${site.name}`, `/v1/sites/${encodeURIComponent(site.name)}/failover`, {
      ...(v.to ? { to: v.to } : {}),
      ...(v.force ? { force: true } : {}),
    });
}

async function onRestore(site) {
  const at = textField('at', 'as of (empty: newest good point)', '2026-11-25T06:00:00Z');
  const v = await confirmAction(
    `Restore ${site.name} from its vault`,
    `${site.name} is fenced and replaced by a restore point: writes made after that point are lost.`,
    [at],
  );
  if (v) await runAction(`restore of ${site.name}`, `/v1/sites/${encodeURIComponent(site.name)}/restore`, v.at ? { at: v.at } : {});
}

async function onPower(host, action) {
  const runs = host.sites.length ? ` It is the primary of ${host.sites.join(', ')}: powering it off is a crash of those sites (they fail over).` : '';
  const v = await confirmAction(`Power ${host.name} ${action}`, `The relay of ${host.name} is switched ${action}.${action === 'off' ? runs : ''}`, []);
  if (v) await runAction(`power ${action} ${host.name}`, `/v1/hosts/${encodeURIComponent(host.name)}/power`, { action });
}

// ------------------------------------------------------------------ rendering

function renderSites() {
  const box = document.getElementById('sites');
  const st = state.status;
  if (!st) return;
  box.replaceChildren(
    ...st.sites.map((s) => {
      const rep = s.replication;
      const lf = s.lastFailover;
      return h(
        'article',
        { class: `card site state-${s.state}`, 'data-site': s.name },
        h(
          'div',
          { class: 'card-head' },
          h('h3', {}, s.name),
          h('span', { class: `badge state-${s.state}`, 'data-test': 'site-state' }, s.state),
          h('span', { class: 'muted' }, 'epoch ', h('b', { 'data-test': 'site-epoch' }, s.epoch)),
          h('span', { class: 'muted' }, 'front ', s.front),
        ),
        h(
          'dl',
          {},
          h('dt', {}, 'primary'),
          h(
            'dd',
            { 'data-test': 'site-primary' },
            h('span', { class: `dot ${s.primary.healthy ? 'ok' : 'bad'}` }),
            `${s.primary.host} `,
            h('span', { class: 'muted' }, s.primary.address),
          ),
          h('dt', {}, 'readers'),
          h('dd', {}, s.readers.length ? s.readers.map((r) => `${r.host}${r.state && r.state !== 'serving' ? ` (${r.state})` : ''}`).join(', ') : '–'),
          h('dt', {}, 'replication'),
          h(
            'dd',
            { 'data-test': 'site-replication' },
            `${rep.mode} → ${rep.to || 'none'} `,
            h('span', { class: `badge rep-${rep.state}` }, rep.state),
            rep.sync ? ` ${rep.sync}` : '',
            ' lag ',
            h('b', {}, rep.lagMs === null ? '–' : `${rep.lagMs} ms`),
          ),
          h('dt', {}, 'last failover'),
          h(
            'dd',
            { 'data-test': 'site-last-failover' },
            lf
              ? [
                  `${lf.from} → ${lf.to} (epoch ${lf.epoch}), ${ago(lf.at)}: `,
                  h('span', { class: 'fig' }, 'detected ', h('b', { 'data-test': 'fig-detection' }, ms(lf.detectionMs))),
                  ' · ',
                  h('span', { class: 'fig' }, 'serving again ', h('b', { 'data-test': 'fig-serving' }, ms(lf.servingAgainMs)), ' after'),
                  ' · ',
                  h('span', { class: 'fig' }, 'lag at failure ', h('b', {}, ms(lf.replicationLagMsAtFailure))),
                ]
              : 'none',
          ),
        ),
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', 'data-action': 'switchover', onclick: () => onSwitchover(s) }, 'Switchover…'),
          h('button', { type: 'button', 'data-action': 'failover', class: 'danger', onclick: () => onFailover(s) }, 'Failover…'),
          h('button', { type: 'button', 'data-action': 'restore', class: 'danger', onclick: () => onRestore(s) }, 'Restore…'),
        ),
      );
    }),
  );
}

function renderHosts() {
  const st = state.status;
  if (!st) return;
  const readerOf = new Map();
  for (const s of st.sites) for (const r of s.readers) readerOf.set(r.host, [...(readerOf.get(r.host) || []), s.name]);
  document.querySelector('#hosts tbody').replaceChildren(
    ...st.hosts.map((x) => {
      const trust = x.trust ? x.trust.state : 'trusted';
      const runs = [...x.sites.map((s) => `${s} (primary)`), ...(readerOf.get(x.name) || []).map((s) => `${s} (reader)`)];
      return h(
        'tr',
        { 'data-host': x.name },
        h('td', {}, h('b', {}, x.name)),
        h('td', { class: 'muted' }, x.address),
        h('td', {}, h('span', { class: `badge power-${x.power}`, 'data-test': 'host-power' }, x.power)),
        h('td', { title: x.trust ? x.trust.why : '' }, h('span', { class: `badge trust-${trust}` }, trust)),
        h('td', {}, x.storage),
        h('td', { 'data-test': 'host-runs' }, runs.join(', ') || '–'),
        h(
          'td',
          {},
          h(
            'button',
            {
              type: 'button',
              class: 'quiet small',
              'data-action': `power-${x.power === 'on' ? 'off' : 'on'}`,
              onclick: () => onPower(x, x.power === 'on' ? 'off' : 'on'),
            },
            x.power === 'on' ? 'Power off…' : 'Power on…',
          ),
        ),
      );
    }),
  );
}

function renderStorage() {
  const st = state.status;
  if (!st) return;
  document.querySelector('#storage tbody').replaceChildren(
    ...(st.storage || []).map((s) => {
      let points = '–';
      if (s.backup) {
        const rows = [];
        for (const [site, b] of state.backups) {
          if (b.error) {
            if (b.status !== 400) rows.push(h('div', { class: 'muted' }, h('b', {}, site), `: ${b.error}`));
            continue;
          }
          if (!b.points || b.vault !== s.name) continue;
          const newest = b.points[0];
          rows.push(
            h(
              'div',
              {},
              h('b', {}, site),
              ': ',
              newest
                ? [
                    `${time(newest.takenAt)} (${ago(newest.takenAt)}), epoch ${newest.epoch}, ${bytes(newest.bytes)}, `,
                    h(
                      'span',
                      { class: newest.verification === undefined ? 'muted' : newest.verification.ok ? 'ok' : 'bad' },
                      newest.verification === undefined ? 'not verified yet' : newest.verification.ok ? 'verified' : 'FAILED verification',
                    ),
                    h('span', { class: 'muted' }, ` · ${b.points.length} kept`),
                  ]
                : 'no point yet',
            ),
          );
        }
        points = rows.length ? rows : 'no site backs up here';
      }
      return h(
        'tr',
        { 'data-storage': s.name },
        h('td', {}, h('b', {}, s.name)),
        h('td', {}, s.backup ? 'vault' : 'volumes'),
        h('td', {}, h('span', { class: `badge ${s.up ? 'up' : 'down'}` }, s.up ? 'up' : 'down')),
        h('td', {}, points),
      );
    }),
  );
}

function renderRunbooks() {
  const box = document.getElementById('runbooks');
  const active = [...state.runbooks.values()].filter((r) => !r.done || Date.now() - r.done < 15_000).slice(-4);
  box.replaceChildren(
    ...active.map((r) =>
      h(
        'div',
        { class: `runbook ${r.done ? 'finished' : 'running'}`, 'data-runbook': r.id, 'data-kind': r.kind },
        h('b', {}, `${r.kind} #${r.id}`),
        ` ${r.site} `,
        h(
          'span',
          { class: 'steps' },
          r.steps.map((s) =>
            h(
              'span',
              { class: `step ${s.phase}`, title: s.error || '' },
              s.step,
              s.phase === 'end' && s.ms !== undefined ? ` ${ms(s.ms)}` : s.phase === 'error' ? ' ✗' : ' …',
            ),
          ),
        ),
      ),
    ),
  );
}

const KIND_CLASS = [
  [/complete$|^site-started$|^reprotected$|recovered$|verification-ok$/, 'good'],
  [/failed$|blocked$|corruption|given-up$|failing$|refused$|^primary-failed$|^failure-detected$/, 'bad'],
  [/started$|resumed$|^power-|^promoted$|^transformed$|detected$/, 'info'],
];
function kindClass(kind) {
  for (const [re, c] of KIND_CLASS) if (re.test(kind)) return c;
  return '';
}

function addTimelineEvent(e) {
  const list = document.getElementById('timeline');
  const item = h(
    'li',
    { class: `ev ${kindClass(e.kind)}`, 'data-kind': e.kind, 'data-event-id': e.id },
    h('span', { class: 'when' }, time(e.at)),
    h('span', { class: 'kind' }, e.kind),
    e.site ? h('span', { class: 'site' }, e.site) : null,
    h('span', { class: 'msg' }, e.message),
  );
  list.prepend(item);
  while (list.children.length > TIMELINE_MAX) list.lastElementChild.remove();
}

function addTimelineStep(s) {
  if (s.phase === 'begin') return;
  const list = document.getElementById('timeline');
  list.prepend(
    h(
      'li',
      { class: `step-line ${s.phase === 'error' ? 'bad' : ''}`, 'data-step': s.step, 'data-runbook': s.runbook },
      h('span', { class: 'when' }, time(s.at)),
      h('span', { class: 'kind' }, `${s.kind} #${s.runbook}`),
      h('span', { class: 'site' }, s.site),
      h('span', { class: 'msg' }, `${s.step} ${s.phase === 'end' ? `✓ ${ms(s.ms)}` : `✗ ${s.error || ''}`}`),
    ),
  );
  while (list.children.length > TIMELINE_MAX) list.lastElementChild.remove();
}

// ------------------------------------------------------------------ data

let refreshing = false;
let refreshAgain = false;
async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    state.status = await api('/v1/status');
    state.lastRefresh = Date.now();
    renderSites();
    renderHosts();
    renderStorage();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) document.getElementById('clock').textContent = `status unavailable: ${e.message}`;
  } finally {
    refreshing = false;
    if (refreshAgain) {
      refreshAgain = false;
      setTimeout(refresh, 50);
    }
  }
}

async function refreshBackups() {
  if (!state.status) return;
  for (const s of state.status.sites) {
    try {
      state.backups.set(s.name, await api(`/v1/sites/${encodeURIComponent(s.name)}/backups`));
    } catch (e) {
      // 400: the site has no backups configured.
      state.backups.set(s.name, { error: e.message, status: e.status });
    }
  }
  renderStorage();
}

function onStreamEvent(e) {
  state.lastEventId = Math.max(state.lastEventId, e.id);
  addTimelineEvent(e);
  refresh();
}

function onStreamStep(s) {
  let r = state.runbooks.get(s.runbook);
  if (!r) {
    r = { id: s.runbook, site: s.site, kind: s.kind, steps: [], done: 0 };
    state.runbooks.set(s.runbook, r);
  }
  const existing = r.steps.find((x) => x.step === s.step);
  if (existing) Object.assign(existing, s);
  else r.steps.push({ ...s });
  if (s.step === 'record' && s.phase === 'end') r.done = Date.now();
  if (s.phase === 'error') r.done = Date.now();
  renderRunbooks();
  addTimelineStep(s);
}

function setLive(on, text) {
  const el = document.getElementById('live');
  el.className = `live ${on ? 'on' : 'off'}`;
  el.textContent = text || (on ? 'live' : 'reconnecting…');
}

/** Follows the events stream for ever; reconnects with Last-Event-ID, so nothing is missed. */
async function follow() {
  let first = true;
  while (true) {
    try {
      const headers = { accept: 'text/event-stream', ...authHeaders() };
      if (!first) headers['last-event-id'] = String(state.lastEventId);
      const res = await fetch(first ? '/v1/events/stream?tail=100' : '/v1/events/stream', { headers });
      if (res.status === 401) {
        setLive(false, 'token needed');
        askToken();
        await sleep(2000);
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
      first = false;
      setLive(true);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let type = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            if (field === 'event') type = val;
            else if (field === 'data') data += (data ? '\n' : '') + val;
          }
          if (!data) continue;
          try {
            if (type === 'step') onStreamStep(JSON.parse(data));
            else onStreamEvent(JSON.parse(data));
          } catch (err) {
            console.error('bad stream message', err);
          }
        }
      }
    } catch (err) {
      console.warn('events stream', err);
    }
    setLive(false);
    await sleep(1000);
  }
}

function tick() {
  document.getElementById('clock').textContent = state.lastRefresh ? `updated ${time(state.lastRefresh)}` : '';
}

document.getElementById('token-button').addEventListener('click', () => askToken());
refresh().then(refreshBackups);
setInterval(refresh, 1000);
setInterval(refreshBackups, 5000);
setInterval(tick, 1000);
follow();
