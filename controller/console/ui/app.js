// The console page: preact + htm (no JSX, no build-time transform beyond bundling) and uPlot for the
// charts. Plain JS on purpose: the repository's tsconfig has no DOM types, and the page is small.
// Bundled by ../build.ts into ../assets/app.js; nothing is fetched from anywhere but this server.
import { render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { html } from 'htm/preact';
import uPlot from 'uplot';

class Unauthorized extends Error {}

async function api(path, init) {
  const res = await fetch(path, { credentials: 'same-origin', ...init, headers: { 'content-type': 'application/json', ...(init?.headers ?? {}) } });
  if (res.status === 401) throw new Unauthorized('log in first');
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body?.error?.message ?? `${res.status} ${res.statusText}`);
  return body;
}

const post = (path, body) => api(path, { method: 'POST', body: JSON.stringify(body) });

/** Polls `fn` every `ms` while mounted; returns [value, error]. */
function usePoll(fn, ms, deps, onUnauthorized) {
  const [value, setValue] = useState(undefined);
  const [error, setError] = useState(undefined);
  useEffect(() => {
    let stop = false;
    let t;
    const run = async () => {
      try {
        const v = await fn();
        if (!stop) (setValue(v), setError(undefined));
      } catch (e) {
        if (e instanceof Unauthorized) return onUnauthorized();
        if (!stop) setError(e.message);
      }
      if (!stop && ms > 0) t = setTimeout(run, ms);
    };
    run();
    return () => ((stop = true), clearTimeout(t));
  }, deps);
  return [value, error];
}

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

const fmt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? ''));

function Login({ onDone }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    try {
      await post('/api/login', { token });
      onDone();
    } catch (err) {
      setError(err instanceof Unauthorized ? 'That token is not accepted.' : err.message);
    }
  };
  return html`<form class="login" onSubmit=${submit} data-testid="login">
    <h1>sluice console</h1>
    <p>Paste the control token (<code>sluice dev</code> writes it to <code>&lt;data&gt;/token</code>).</p>
    <input type="password" name="token" autocomplete="current-password" placeholder="control token" value=${token} onInput=${(e) => setToken(e.currentTarget.value)} />
    <button type="submit">Log in</button>
    ${error && html`<p class="error" data-testid="login-error">${error}</p>`}
  </form>`;
}

function Functions({ auth }) {
  const [data, error] = usePoll(() => api('/api/functions'), 1000, [], auth);
  const fns = data?.functions ?? [];
  return html`<section>
    <h2>Functions</h2>
    ${error && html`<p class="error">${error}</p>`} ${data?.problem && html`<p class="error">${data.problem}</p>`}
    <table data-testid="functions">
      <thead><tr><th>function</th><th>revision</th><th>replicas (ready/desired)</th><th>lag</th><th>rate/s</th><th>counters</th><th>dead letters</th><th>last error</th></tr></thead>
      <tbody>
        ${fns.map(
          (f) => html`<tr data-testid=${`fn-${f.name}`}>
            <td><a href=${`#/fn/${encodeURIComponent(f.name)}`}>${f.name}</a></td>
            <td>${f.revision}</td>
            <td data-testid="replicas">${f.replicas.ready}/${f.replicas.desired}</td>
            <td data-testid="lag">${fmt(f.lag)}</td>
            <td>${fmt(f.ratePerSecond)}</td>
            <td data-testid="counters">${Object.entries(f.counters).map(([k, v]) => html`<span class="pill">${k}=${fmt(v)}</span> `)}</td>
            <td>${fmt(f.deadLetters)}</td>
            <td class=${f.lastError ? 'err' : ''}>${f.lastError ? html`<span title=${f.lastError.at}>${f.lastError.message}</span>` : '—'}</td>
          </tr>`,
        )}
        ${fns.length === 0 && html`<tr><td colspan="8">no function deployed${data ? '' : ' (loading…)'}</td></tr>`}
      </tbody>
    </table>
  </section>`;
}

function Chart({ title, series, field, testid }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const xs = series.map((s) => s.at / 1000);
    const ys = series.map((s) => s[field]);
    if (!plot.current) {
      plot.current = new uPlot(
        { title, width: 520, height: 200, scales: { x: { time: true } }, series: [{}, { label: field, stroke: '#2b6cb0', width: 2, fill: 'rgba(43,108,176,0.1)' }], axes: [{}, { size: 60 }] },
        [xs, ys],
        el.current,
      );
    } else plot.current.setData([xs, ys]);
  }, [series]);
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<div class="chart" data-testid=${testid} data-last=${series.length ? series[series.length - 1][field] : ''} ref=${el}></div>`;
}

function Logs({ name, auth }) {
  const [lines, setLines] = useState([]);
  const [error, setError] = useState('');
  const after = useRef(0);
  useEffect(() => {
    let stop = false;
    let t;
    const run = async () => {
      try {
        const r = await api(`/api/functions/${encodeURIComponent(name)}/logs?after=${after.current}`);
        after.current = r.next;
        if (!stop && r.lines.length) setLines((old) => [...old, ...r.lines].slice(-500));
        if (!stop) setError(r.error ?? '');
      } catch (e) {
        if (e instanceof Unauthorized) return auth();
        if (!stop) setError(e.message);
      }
      if (!stop) t = setTimeout(run, 1000);
    };
    run();
    return () => ((stop = true), clearTimeout(t));
  }, [name]);
  return html`<div>
    <h3>Live logs</h3>
    ${error && html`<p class="error">${error}</p>`}
    <pre class="logs" data-testid="logs">${lines.map((l) => `${l.line.at} [${l.line.ordinal}] ${l.line.level} ${l.line.message} ${Object.keys(l.line.fields ?? {}).length ? JSON.stringify(l.line.fields) : ''}\n`)}</pre>
  </div>`;
}

function DeadLetters({ name, auth }) {
  const [tick, setTick] = useState(0);
  const [msg, setMsg] = useState('');
  const [data, error] = usePoll(() => api(`/api/functions/${encodeURIComponent(name)}/dead-letters?limit=50`), 5000, [name, tick], auth);
  const redrive = async (l) => {
    try {
      const r = await post(`/api/functions/${encodeURIComponent(name)}/dead-letters/redrive`, { shard: l.shard, seq: l.seq });
      setMsg(`redrove ${l.shard}/${l.seq}: ${r.outcome.status}${r.outcome.reason ? ` (${r.outcome.reason})` : ''}`);
      setTick(tick + 1);
    } catch (e) {
      if (e instanceof Unauthorized) return auth();
      setMsg(e.message);
    }
  };
  const letters = data?.letters ?? [];
  return html`<div>
    <h3>Dead letters (${fmt(data?.total ?? 0)} in ${data?.stream ?? `dlq-${name}`})</h3>
    ${error && html`<p class="error">${error}</p>`} ${msg && html`<p class="note" data-testid="redrive-result">${msg}</p>`}
    <table data-testid="dead-letters">
      <thead><tr><th>dead at</th><th>key</th><th>attempts</th><th>error</th><th></th></tr></thead>
      <tbody>
        ${letters.map(
          (l) => html`<tr>
            <td>${l.letter.deadAt ?? l.time}</td><td>${l.letter.key}</td><td>${l.letter.attempts}</td>
            <td class="err">${l.letter.error?.code}: ${l.letter.error?.message}</td>
            <td>${l.redriven ? html`<span class="pill">redriven ${l.redriven.outcome.status}</span>` : html`<button onClick=${() => redrive(l)}>Redrive</button>`}</td>
          </tr>`,
        )}
        ${letters.length === 0 && html`<tr><td colspan="5">none</td></tr>`}
      </tbody>
    </table>
  </div>`;
}

function FunctionPage({ name, auth }) {
  const [data, error] = usePoll(() => api(`/api/functions/${encodeURIComponent(name)}`), 1000, [name], auth);
  const s = data?.status;
  return html`<section>
    <p><a href="#/">← functions</a></p>
    <h2>${name}</h2>
    ${error && html`<p class="error">${error}</p>`}
    ${s &&
    html`<p data-testid="fn-summary">revision ${s.revision} · replicas ${s.replicas.ready}/${s.replicas.desired} · lag <b data-testid="fn-lag">${fmt(s.lag)}</b> · ${fmt(s.ratePerSecond)} records/s ·
      ${Object.entries(s.counters).map(([k, v]) => html`<span class="pill">${k}=${fmt(v)}</span> `)}</p>
      ${s.errors.length > 0 && html`<p class="error">last error ${s.errors[0].at}: ${s.errors[0].message}</p>`}`}
    <div class="charts">
      <${Chart} title="lag (records)" series=${data?.series ?? []} field="lag" testid="chart-lag" />
      <${Chart} title="throughput (records/s)" series=${data?.series ?? []} field="ratePerSecond" testid="chart-rate" />
    </div>
    <h3>Shards</h3>
    <table data-testid="shards">
      <thead><tr><th>shard</th><th>owner</th><th>epoch</th><th>lag</th><th>pending retries</th></tr></thead>
      <tbody>${(s?.shards ?? []).map((x) => html`<tr><td>${x.shard}</td><td>${x.owner || '—'}</td><td>${x.epoch}</td><td>${fmt(x.lag)}</td><td>${x.pending}</td></tr>`)}</tbody>
    </table>
    <${Logs} name=${name} auth=${auth} />
    <${DeadLetters} name=${name} auth=${auth} />
  </section>`;
}

function AttrValue({ bucket, objKey, name, value }) {
  if (value && typeof value === 'object' && '$bytes' in value) {
    if (value.$image)
      return html`<img class="thumb" data-testid=${`attr-img-${name}`} alt=${name} src=${`/api/buckets/${encodeURIComponent(bucket)}/attr?key=${encodeURIComponent(objKey)}&name=${encodeURIComponent(name)}`} /> <small>${value.$image}, ${fmt(value.$bytes)} bytes</small>`;
    return html`<span>${fmt(value.$bytes)} bytes</span>`;
  }
  if (value && typeof value === 'object' && '$time' in value) return html`<span>${value.$time}</span>`;
  return html`<code>${JSON.stringify(value)}</code>`;
}

function ObjectDetail({ bucket, objKey, auth }) {
  const [o, error] = usePoll(() => api(`/api/buckets/${encodeURIComponent(bucket)}/object?key=${encodeURIComponent(objKey)}`), 0, [bucket, objKey], auth);
  return html`<div class="detail" data-testid="object-detail">
    <h3>${objKey}</h3>
    ${error && html`<p class="error">${error}</p>`}
    ${o &&
    html`<p>${fmt(o.size)} bytes · ${o.contentType} · version ${o.version} · etag <code>${o.etag}</code> · ${o.mtime}</p>
      <table data-testid="attrs">
        <thead><tr><th>attribute</th><th>value</th></tr></thead>
        <tbody>${Object.entries(o.attrs).map(([k, v]) => html`<tr data-testid=${`attr-${k}`}><td>${k}</td><td><${AttrValue} bucket=${bucket} objKey=${objKey} name=${k} value=${v} /></td></tr>`)}</tbody>
      </table>`}
  </div>`;
}

function Objects({ bucket, prefix, auth }) {
  const [buckets] = usePoll(() => api('/api/buckets'), 0, [], auth);
  const [pages, setPages] = useState([]);
  const [error, setError] = useState('');
  const [open, setOpen] = useState(undefined);
  const load = useCallback(
    async (token) => {
      if (!bucket) return;
      try {
        const q = new URLSearchParams({ prefix: prefix ?? '', ...(token ? { token } : {}) });
        const r = await api(`/api/buckets/${encodeURIComponent(bucket)}/objects?${q}`);
        setPages((p) => (token ? [...p, r] : [r]));
        setError('');
      } catch (e) {
        if (e instanceof Unauthorized) return auth();
        setError(e.message);
      }
    },
    [bucket, prefix],
  );
  useEffect(() => {
    setPages([]);
    setOpen(undefined);
    load(undefined);
  }, [bucket, prefix]);
  const last = pages[pages.length - 1];
  const to = (b, p) => `#/objects/${encodeURIComponent(b)}${p ? `?prefix=${encodeURIComponent(p)}` : ''}`;
  return html`<section>
    <h2>Objects</h2>
    <p data-testid="buckets">buckets: ${(buckets?.buckets ?? []).map((b) => html`<a class=${b === bucket ? 'pill on' : 'pill'} href=${to(b, '')}>${b}</a> `)}</p>
    ${bucket &&
    html`<p class="crumbs">
      <a href=${to(bucket, '')}>${bucket}</a>/${(prefix ?? '')
        .split('/')
        .filter(Boolean)
        .map((seg, i, all) => html`<a href=${to(bucket, `${all.slice(0, i + 1).join('/')}/`)}>${seg}</a>/`)}
    </p>`}
    ${error && html`<p class="error">${error}</p>`}
    <div class="browser">
      <table data-testid="objects">
        <thead><tr><th>key</th><th>size</th><th>type</th><th>modified</th></tr></thead>
        <tbody>
          ${pages.flatMap((p) => p.prefixes.map((x) => html`<tr><td><a href=${to(bucket, x)}>${x.slice((prefix ?? '').length)}</a></td><td></td><td>prefix</td><td></td></tr>`))}
          ${pages.flatMap((p) =>
            p.objects.map(
              (x) => html`<tr class=${open === x.key ? 'on' : ''}><td><a href="javascript:void 0" data-key=${x.key} onClick=${() => setOpen(x.key)}>${x.key.slice((prefix ?? '').length)}</a></td><td>${fmt(x.size)}</td><td>${x.contentType}</td><td>${x.mtime}</td></tr>`,
            ),
          )}
        </tbody>
      </table>
      ${open && html`<${ObjectDetail} bucket=${bucket} objKey=${open} auth=${auth} />`}
    </div>
    ${last?.nextToken && html`<button onClick=${() => load(last.nextToken)}>more</button>`}
  </section>`;
}

function Query({ auth }) {
  const [sql, setSql] = useState('SELECT key, size FROM uploads WHERE has_ssn = true');
  const [result, setResult] = useState(undefined);
  const [error, setError] = useState('');
  const run = async (e) => {
    e.preventDefault();
    try {
      setResult(await post('/api/query', { sql }));
      setError('');
    } catch (err) {
      if (err instanceof Unauthorized) return auth();
      setResult(undefined);
      setError(err.message);
    }
  };
  const cols = [...new Set((result?.rows ?? []).flatMap((r) => (r && typeof r === 'object' ? Object.keys(r) : ['value'])))];
  return html`<section>
    <h2>Query</h2>
    <form onSubmit=${run} class="query"><textarea data-testid="sql" rows="3" value=${sql} onInput=${(e) => setSql(e.currentTarget.value)}></textarea><button type="submit">Run</button></form>
    ${error && html`<p class="error" data-testid="query-error">${error}</p>`}
    ${result &&
    html`<table data-testid="query-rows"><thead><tr>${cols.map((c) => html`<th>${c}</th>`)}</tr></thead>
      <tbody>${result.rows.map((r) => html`<tr>${cols.map((c) => html`<td><code>${JSON.stringify(r && typeof r === 'object' ? r[c] : r)}</code></td>`)}</tr>`)}</tbody></table>
      ${result.truncated && html`<p class="note">first ${result.rows.length} rows</p>`}`}
  </section>`;
}

function App() {
  const [authed, setAuthed] = useState(undefined);
  const hash = useHash();
  const check = () =>
    api('/api/session')
      .then(() => setAuthed(true))
      .catch(() => setAuthed(false));
  useEffect(() => void check(), []);
  const auth = () => setAuthed(false);
  if (authed === undefined) return html`<p>loading…</p>`;
  if (!authed) return html`<${Login} onDone=${() => setAuthed(true)} />`;
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query ?? '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let page;
  if (parts[0] === 'fn' && parts[1]) page = html`<${FunctionPage} name=${parts[1]} auth=${auth} />`;
  else if (parts[0] === 'objects') page = html`<${Objects} bucket=${parts[1]} prefix=${params.get('prefix') ?? ''} auth=${auth} />`;
  else if (parts[0] === 'query') page = html`<${Query} auth=${auth} />`;
  else page = html`<${Functions} auth=${auth} />`;
  const logout = async () => {
    await post('/api/logout', {}).catch(() => {});
    setAuthed(false);
  };
  return html`<div>
    <nav><b>sluice</b> <a href="#/">functions</a> <a href="#/objects">objects</a> <a href="#/query">query</a> <button class="link" onClick=${logout}>log out</button></nav>
    <main>${page}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
