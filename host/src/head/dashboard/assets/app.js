// The wasmfabric dashboard: plain JavaScript over the head's JSON views.
// Everything a tenant controls (job output, names, errors) is put on the
// page as text (textContent), never parsed as HTML.
'use strict';

let csrf = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const r = await fetch(path, Object.assign({ credentials: 'same-origin' }, options, { headers }));
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('signed out');
  }
  const body = await r.json();
  if (!r.ok) {
    const e = new Error(body.error || r.statusText);
    e.busy = r.status === 429;
    throw e;
  }
  return body;
}

const short = (id) => (id || '').slice(0, 8);
const bytes = (n) => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
};
const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');
const duration = (start, end) => {
  const s = Math.max(0, ((end || Date.now()) - start) / 1000);
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
};

function table(headers, rows) {
  return el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { text: h })))),
    el('tbody', {}, ...rows));
}

function row(attrs, cells) {
  return el('tr', attrs, ...cells.map((c) => (c instanceof Node ? el('td', {}, c) : el('td', { text: c }))));
}

function status(s) {
  return el('span', { class: s, text: s });
}

async function overview(view) {
  const [c, nodes] = await Promise.all([api('/api/cluster'), api('/api/nodes')]);
  const card = (title, obj) => el('div', { class: 'card' }, title,
    ...Object.entries(obj).map(([k, v]) => el('div', {}, el('b', { text: v }), k)));
  view.replaceChildren(
    el('h2', { text: 'Overview' }),
    el('div', { class: 'cards' }, card('Nodes', c.nodes), card('Jobs', c.jobs), card('Actors', c.actors)),
    el('h2', { text: 'Nodes' }), nodeTable(nodes));
}

function nodeTable(nodes) {
  return table(['Node', 'Address', 'State', 'CPU free/total', 'GPU free/total', 'Resident memory',
    'Object store', 'Tasks queued/running', 'Instances'], nodes.map((n) => row(
    { 'data-node-id': n.node_id, class: 'node' },
    [short(n.node_id) + (n.is_head ? ' (head)' : ''), n.address, status(n.state),
      `${n.free.CPU}/${n.total.CPU}`, `${n.free.GPU}/${n.total.GPU}`, bytes(n.resident_bytes),
      `${bytes(n.object_store_used)} of ${bytes(n.object_store_capacity)}`,
      `${n.queued_tasks}/${n.running_tasks}`, `${n.live_instances}`])));
}

async function nodesView(view) {
  view.replaceChildren(el('h2', { text: 'Nodes' }), nodeTable(await api('/api/nodes')));
}

async function jobsView(view) {
  const jobs = (await api('/api/jobs')).reverse();
  view.replaceChildren(el('h2', { text: 'Jobs' }), table(
    ['Job', 'Tenant', 'Status', 'Started', 'Duration', 'Error'],
    jobs.map((j) => row({ 'data-job-id': j.job_id, class: 'job' }, [
      el('a', { href: `#/jobs/${j.job_id}`, text: short(j.job_id) }), j.tenant, status(j.status),
      when(j.start_time_ms), duration(j.start_time_ms, j.end_time_ms), j.error || '']))));
}

// The job being shown, and the reader of its streamed log.
let following = null;

async function jobView(view, id) {
  const j = await api(`/api/jobs/${id}`);
  const log = el('pre', { id: 'log' });
  const act = (label, method, path) => {
    const b = el('button', { type: 'button', id: label.toLowerCase(), text: label });
    b.onclick = async () => {
      try { await api(path, { method }); } catch (e) { alert(e.message); }
      route();
    };
    return b;
  };
  view.replaceChildren(
    el('h2', { text: `Job ${j.job_id}` }),
    table(['Tenant', 'Status', 'Started', 'Duration', 'Driver node', 'Error'], [row({ id: 'job' }, [
      j.tenant, status(j.status), when(j.start_time_ms), duration(j.start_time_ms, j.end_time_ms),
      short(j.driver_node), j.error || ''])]),
    j.status === 'RUNNING' ? act('Stop', 'POST', `/api/jobs/${id}/stop`) : act('Delete', 'DELETE', `/api/jobs/${id}`),
    el('h3', { text: 'Output' }), log,
    el('h3', { text: 'Tasks' }), el('div', { id: 'tasks' }, 'asking the nodes…'));
  followLog(id, log);
  showTasks(id);
}

// The job whose tasks refresh, and their timer.
let tasksTimer = null;

// Shows a job's tasks (asked of every node through the head), again every
// few seconds while it runs and twice after it ended (nodes record its
// last calls as they stop), and not after an error other than "busy".
async function showTasks(id, after = 2) {
  clearTimeout(tasksTimer);
  const box = document.getElementById('tasks');
  if (!box) return;
  let again = false;
  try {
    const { job, tasks: s } = await api(`/api/jobs/${id}/tasks`);
    if (job.status === 'RUNNING') again = true;
    else if (after > 0) { again = true; after -= 1; }
    const t = s.tasks;
    const card = (title, n) => el('div', { class: 'card', id: `tasks-${title.replace(' ', '-')}` },
      el('b', { text: n }), title);
    const call = (c) => (c.class ? `${c.class}.${c.function}` : c.function);
    const ms = (v) => (v == null ? '' : `${v.toFixed(1)} ms`);
    box.replaceChildren(
      el('div', { class: 'cards', id: 'task-counts' }, card('submitted', t.submitted), card('succeeded', t.succeeded),
        card('failed', t.failed), card('running', t.running), card('queued', t.queued), card('pending', t.pending),
        card('actor calls', s.calls.actor_calls)),
      s.truncated ? el('p', { class: 'note', id: 'tasks-truncated',
        text: 'Some task events are missing: a node dropped its oldest past its bounds, or could not be asked.' }) : '',
      el('a', { href: `/api/jobs/${id}/timeline`, download: `timeline-${short(id)}.json`,
        text: 'Download the timeline (Chrome trace: chrome://tracing or ui.perfetto.dev)' }),
      el('h4', { text: 'Failures (newest first)' }),
      table(['Call', 'Attempt', 'Node', 'Outcome', 'Error'], s.failures.map((c) => row({ class: 'failure' },
        [call(c), c.attempt, short(c.node), c.outcome, c.error || '']))),
      el('h4', { text: 'Slowest' }),
      table(['Call', 'Ran', 'Waited', 'Node', 'Bytes in/out', 'Outcome'], s.slowest.map((c) => row({ class: 'slow' },
        [call(c), ms(c.run_ms), ms(c.wait_ms), short(c.node), `${bytes(c.bytes_in)} / ${bytes(c.bytes_out)}`, c.outcome]))));
  } catch (e) {
    // What was shown stays; why this refresh failed is said below it. A
    // busy head (429) is asked again; anything else ends the refreshes.
    again = e.busy === true;
    const note = el('p', { class: 'error', text: e.message });
    if (box.lastChild && box.lastChild.className === 'error') box.lastChild.replaceWith(note);
    else box.append(note);
  }
  if (again && box.isConnected) tasksTimer = setTimeout(() => showTasks(id, after), 3000);
}

// Streams the job's output into `pre` as it comes (until the job ends).
async function followLog(id, pre) {
  if (following) following.cancel();
  const r = await fetch(`/api/jobs/${id}/logs?follow=true`, { credentials: 'same-origin' });
  if (!r.ok || !r.body) return;
  const reader = r.body.getReader();
  following = reader;
  const text = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pre.append(document.createTextNode(text.decode(value, { stream: true })));
    pre.scrollTop = pre.scrollHeight;
  }
}

async function actorsView(view) {
  const actors = await api('/api/actors');
  view.replaceChildren(el('h2', { text: 'Actors' }), table(
    ['Actor', 'Class', 'Name', 'Tenant', 'State', 'Restarts', 'Node', 'Job', 'Death'],
    actors.map((a) => row({ 'data-actor-id': a.actor_id, class: 'actor' }, [
      short(a.actor_id), a.class, a.name, a.tenant, status(a.state),
      `${a.restarts}/${a.max_restarts}`, short(a.node_id), short(a.job_id), a.death_reason || '']))));
}

async function tenantsView(view) {
  const tenants = await api('/api/tenants');
  const quota = (q) => Object.entries(q).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  view.replaceChildren(el('h2', { text: 'Tenants' }), table(
    ['Tenant', 'Jobs (running)', 'CPU-seconds', 'Memory GiB-s', 'Object GiB-s', 'Tasks', 'Actors live', 'Quota'],
    tenants.map((t) => row({ 'data-tenant': t.tenant, class: 'tenant' }, [
      t.tenant, `${t.jobs} (${t.jobs_running})`, t.cpu_seconds.toFixed(2),
      (t.memory_byte_seconds / 2 ** 30).toFixed(2), (t.object_byte_seconds / 2 ** 30).toFixed(2),
      t.tasks, t.live_actors, quota(t.quota)]))));
}

async function serveView(view) {
  const list = await api('/api/serve');
  const answers = (r) => ['2xx', '3xx', '4xx', '5xx'].map((c) => `${c} ${r.requests[c] || 0}`).join(', ');
  view.replaceChildren(el('h2', { text: 'Serve' }), table(
    ['Deployment', 'Tenant', 'Route', 'Kept', 'Deployed', 'Ingresses', 'Replicas (starting)',
      'Ongoing', 'Queued', 'Answers', 'p99 ms'],
    list.map((d) => row({ 'data-deployment': `${d.tenant}/${d.name}`, class: 'deployment' }, [
      d.name, d.tenant, `${d.host || '*'}${d.route}`, d.kept ? 'yes' : 'no', when(d.deployed_unix_ms),
      `${d.ingresses}`, `${d.replicas} (${d.starting})`, `${d.ongoing}`, `${d.queued}`, answers(d),
      d.p99_ms == null ? '' : `${d.p99_ms}`]))));
}

async function route() {
  clearTimeout(tasksTimer);
  // A followed log holds a stream (and one of the tenant's few): end it.
  if (following) {
    following.cancel();
    following = null;
  }
  const view = document.getElementById('view');
  const hash = location.hash || '#/';
  const job = hash.match(/^#\/jobs\/([0-9a-f]+)$/);
  try {
    if (job) await jobView(view, job[1]);
    else if (hash === '#/nodes') await nodesView(view);
    else if (hash === '#/jobs') await jobsView(view);
    else if (hash === '#/actors') await actorsView(view);
    else if (hash === '#/tenants') await tenantsView(view);
    else if (hash === '#/serve') await serveView(view);
    else await overview(view);
  } catch (e) {
    view.replaceChildren(el('p', { class: 'error', text: e.message }));
  }
}

async function startApp() {
  const me = await api('/api/session');
  csrf = me.csrf;
  document.getElementById('who').textContent = `${me.tenant}${me.admin ? ' (admin)' : ''}`;
  document.getElementById('logout').onclick = async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin', headers: { 'x-csrf-token': csrf } });
    location.href = '/login';
  };
  window.addEventListener('hashchange', route);
  route();
  // Lists refresh themselves; a job's page streams its output instead.
  setInterval(() => { if (!/^#\/jobs\/./.test(location.hash)) route(); }, 3000);
}

function startLogin() {
  // Enabled only now: without this script the form must not submit (the
  // token would otherwise travel in a URL).
  document.getElementById('sign-in').disabled = false;
  document.getElementById('login-form').onsubmit = async (event) => {
    event.preventDefault();
    const token = document.getElementById('token').value;
    const r = await fetch('/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    if (r.ok) location.href = '/';
    else document.getElementById('login-error').textContent = (await r.json()).error;
  };
}

if (document.body.dataset.page === 'login') startLogin();
else startApp();
