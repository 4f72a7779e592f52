"""The HTML of ``imusic session --web``'s pages (served by imusic/session_web.py).

Both pages poll ``/state`` (imusic/session_state.py) every ``POLL_MS`` and fill elements by
id, which the browser tests (tests/imusic/test_session_web.py) read: the participant page's
``prompt``, ``remaining``, ``face`` / ``face-note``; the experimenter page's ``rate``,
``loss``, ``battery``, ``samples``, ``prompt``, the ``takes`` table and the ``continue``,
``redo`` and ``stop`` buttons (a row's own ``redo`` button names its task), and the live
blendshape curves: ``/curves`` (capture/live_curves.py) drawn on the ``curves`` canvas (its
``data-kept`` and ``data-points`` attributes say what was drawn; ``window.lastCurves`` is the
JSON), one ``curve-pick`` checkbox per shape and the ``curve-add`` list of other channels.
"""

POLL_MS = 250
"""How often the pages ask for ``/state`` (milliseconds)."""
CURVES_MS = 200
"""How often the experimenter page asks for ``/curves`` (milliseconds)."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
main{padding:2vh 3vw}
.muted{color:#999}
table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #333;text-align:left}
button{font-size:1.1em;padding:.4em 1em;margin-right:.5em}
.ok{color:#6c6}.redo{color:#e66}.recording{color:#fc6}
"""

_POLL = """
let failures = 0;
async function poll(){
  try{
    const r = await fetch('/state', {cache:'no-store'});
    const s = await r.json(); failures = 0; show(s);
    document.getElementById('conn').textContent = '';
  }catch(e){
    failures += 1;
    if(failures > 2) document.getElementById('conn').textContent =
      'no connection to imusic session (it has ended, or stopped)';
  }
}
function txt(id, v){ const el = document.getElementById(id); if(el) el.textContent = v; }
function num(v, d, unit){ return (v === null || v === undefined) ? '-' : v.toFixed(d) + unit; }
setInterval(poll, POLL_MS); poll();
""".replace("POLL_MS", str(POLL_MS))

PARTICIPANT = """<!doctype html><html><head><meta charset="utf-8"><title>imusic: participant</title>
<style>@STYLE@
#prompt{font-size:7vh;font-weight:600;margin:4vh 0 2vh}
#remaining{font-size:4vh}#face{max-height:55vh;display:none}#face-note{font-size:2vh}
</style></head><body><main>
<div id="take" class="muted"></div>
<div id="prompt">Waiting for the session...</div>
<div id="remaining" class="muted"></div>
<img id="face" alt="the target face"><div id="face-note" class="muted"></div>
<div id="conn" class="redo"></div>
</main><script>@POLL@
let faceKey = null;
function show(s){
  txt('take', s.take ? s.take + '  step ' + s.step_index + '/' + s.step_count : '');
  txt('prompt', s.prompt || '');
  txt('remaining', s.waiting_continue ? 'until the experimenter continues'
      : (s.remaining_s === null ? '' : Math.ceil(s.remaining_s) + ' s'));
  const img = document.getElementById('face'), f = s.face || {};
  if(f.state === 'ready'){
    if(faceKey !== f.key){ img.src = '/face/' + f.key + '.png'; faceKey = f.key; }
    img.style.display = 'block'; txt('face-note', '');
  }else{
    img.style.display = 'none'; faceKey = null;
    txt('face-note', f.state === 'rendering' ? 'preparing the face picture...' : (f.reason || ''));
  }
}
</script></body></html>"""

EXPERIMENTER = """<!doctype html><html><head><meta charset="utf-8"><title>imusic: experimenter</title>
<style>@STYLE@ #prompt{font-size:1.6em}</style></head><body><main>
<h2>imusic session <span id="protocol" class="muted"></span></h2>
<div>take <b id="take">-</b>, step <span id="step">-</span>, <span id="phase"></span>
 <span id="remaining" class="muted"></span></div>
<div id="prompt"></div>
<p><button id="continue">continue</button><button id="redo">redo this take</button>
<button id="stop">stop</button> <span id="said" class="muted"></span></p>
<h3>device health</h3>
<table><tr><th>device</th><th>state</th><th>rate</th><th>loss</th><th>battery</th><th>IMU samples</th></tr>
<tr><td id="device">-</td><td id="dstate">-</td><td id="rate">-</td><td id="loss">-</td>
<td id="battery">-</td><td id="samples">-</td></tr></table>
<h3>live blendshapes <span id="curves-note" class="muted"></span></h3>
<div id="curve-pick"></div>
<select id="curve-add"><option value="">add a curve...</option></select>
<div><canvas id="curves" width="900" height="220" data-kept="0" data-points="0"
 style="background:#000;border:1px solid #333;margin-top:.4em"></canvas></div>
<h3>streams</h3><table id="streams"></table>
<h3>takes</h3>
<table><thead><tr><th>take</th><th>file</th><th>verdict</th><th>lost</th><th>face lost</th>
<th>tap</th><th>sync</th><th>neutral</th><th></th></tr></thead><tbody id="takes"></tbody></table>
<div id="conn" class="redo"></div>
</main><script>@POLL@
async function act(path, body){
  const r = await fetch(path, {method:'POST', headers:{'Content-Type':'application/json'},
                               body: JSON.stringify(body || {})});
  const d = await r.json();
  txt('said', path.slice(1) + (d.task ? ' ' + d.task : '') + (d.ok ? ': queued' : ': refused'));
}
document.getElementById('continue').onclick = () => act('/continue');
document.getElementById('redo').onclick = () => act('/redo');
document.getElementById('stop').onclick = () => act('/stop');
function cell(tr, v, cls){ const td = document.createElement('td'); td.textContent = v;
  if(cls) td.className = cls; tr.appendChild(td); return td; }
function show(s){
  txt('protocol', s.protocol + ' / ' + s.participant); txt('take', s.take || '-');
  txt('step', s.step ? s.step + ' (' + s.step_index + '/' + s.step_count + ')' : '-');
  txt('phase', s.phase); txt('prompt', s.prompt || '');
  txt('remaining', s.waiting_continue ? 'waiting for continue'
      : (s.remaining_s === null ? '' : s.remaining_s.toFixed(1) + ' s left'));
  const h = s.health || {};
  txt('device', h.device || '-'); txt('dstate', h.state || '-');
  txt('rate', num(h.rate_hz, 1, ' Hz') + (h.nominal_hz ? ' / ' + h.nominal_hz + ' Hz' : ''));
  txt('loss', h.loss === null || h.loss === undefined ? '-'
      : (100 * h.loss).toFixed(2) + ' % (' + h.lost + ')');
  txt('battery', h.battery_pct === null || h.battery_pct === undefined ? 'unknown'
      : h.battery_pct + ' %');
  txt('samples', String(h.imu_samples));
  const st = document.getElementById('streams'); st.textContent = '';
  for(const x of s.streams || []){ const tr = document.createElement('tr');
    cell(tr, x.type); cell(tr, x.name); cell(tr, x.samples + ' samples');
    cell(tr, num(x.rate_hz, 1, ' Hz')); cell(tr, x.lost + ' lost, ' + x.gaps + ' gaps');
    st.appendChild(tr); }
  const tb = document.getElementById('takes'); tb.textContent = '';
  for(const t of s.takes || []){ const tr = document.createElement('tr');
    tr.dataset.task = t.task; tr.dataset.run = t.run; tr.dataset.status = t.status;
    cell(tr, t.task + ' run ' + t.run); cell(tr, t.file);
    cell(tr, t.status + (t.reasons && t.reasons.length ? ': ' + t.reasons.join('; ') : ''),
         t.status);
    cell(tr, t.imu_lost_share === null || t.imu_lost_share === undefined ? '-'
         : (100 * t.imu_lost_share).toFixed(1) + ' %');
    cell(tr, t.face_lost_share === null || t.face_lost_share === undefined ? '-'
         : (100 * t.face_lost_share).toFixed(1) + ' %');
    cell(tr, t.tap_found === null || t.tap_found === undefined ? '-' : (t.tap_found ? 'yes' : 'no'));
    cell(tr, num(t.sync_confidence, 2, '')); cell(tr, num(t.neutral_s, 1, ' s'));
    const b = document.createElement('button'); b.textContent = 'redo'; b.className = 'redo-row';
    b.onclick = () => act('/redo', {task: t.task}); cell(tr, '').appendChild(b);
    tb.appendChild(tr); }
}
@CURVES@
</script></body></html>"""

_CURVES = """
const COLORS = ['#5bf','#fc5','#f75','#6d6','#c8f','#f6c','#9ef','#ddd','#fa5','#5fc','#f55','#99f'];
let shapes = null, shown = [], pickKey = '';
function pickers(d){
  for(const n of d.shapes) if(!shown.includes(n)) shown.push(n);
  const key = shown.join(',') + '|' + shapes.join(',') + '|' + d.available.length;
  if(key === pickKey) return; pickKey = key;
  const box = document.getElementById('curve-pick'); box.textContent = '';
  shown.forEach((n, i) => { const l = document.createElement('label');
    l.style.color = COLORS[i % COLORS.length]; l.style.marginRight = '1em';
    const c = document.createElement('input'); c.type = 'checkbox'; c.value = n;
    c.checked = shapes.includes(n);
    c.onchange = () => { shapes = shown.filter(x => x === n ? c.checked : shapes.includes(x)); };
    l.appendChild(c); l.appendChild(document.createTextNode(' ' + n)); box.appendChild(l); });
  const sel = document.getElementById('curve-add'); sel.length = 1;
  for(const n of d.available) if(!shown.includes(n)){ const o = document.createElement('option');
    o.value = o.textContent = n; sel.appendChild(o); }
}
document.getElementById('curve-add').onchange = (e) => { const n = e.target.value;
  if(n && shapes !== null){ shown.push(n); shapes = shapes.concat([n]); e.target.value = ''; } };
function draw(d){
  const cv = document.getElementById('curves'), g = cv.getContext('2d');
  const W = cv.width, H = cv.height, pad = 4;
  g.clearRect(0, 0, W, H);
  let lo = 0, hi = 1;
  for(const n of d.shapes) for(const v of d.values[n] || []) if(v !== null){
    lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const y = v => H - pad - (v - lo) / (hi - lo) * (H - 2 * pad);
  const x = t => W * (1 + t / d.window_s);
  g.strokeStyle = '#333'; g.lineWidth = 1; g.beginPath();
  for(const v of [0, 0.5, 1]){ g.moveTo(0, y(v)); g.lineTo(W, y(v)); } g.stroke();
  let points = 0; g.lineWidth = 2;
  for(const n of d.shapes){ const vs = d.values[n] || [];
    g.strokeStyle = COLORS[shown.indexOf(n) % COLORS.length]; g.beginPath(); let pen = false;
    vs.forEach((v, i) => { if(v === null){ pen = false; return; }
      if(pen) g.lineTo(x(d.t[i]), y(v)); else g.moveTo(x(d.t[i]), y(v)); pen = true; points++; });
    g.stroke(); }
  cv.dataset.kept = d.kept; cv.dataset.points = points;
  txt('curves-note', d.stream ? 'last ' + d.window_s + ' s of ' + d.stream + ', ' + d.rate_hz
      + ' frames/s' : 'no Blendshapes stream recorded yet');
}
async function pollCurves(){
  if(shapes !== null && shapes.length === 0){ txt('curves-note', 'no curve chosen'); return; }
  try{
    const q = shapes === null ? '' : '?shapes=' + encodeURIComponent(shapes.join(','));
    const r = await fetch('/curves' + q, {cache:'no-store'}); const d = await r.json();
    if(!r.ok){ txt('curves-note', d.error); return; }
    if(shapes === null) shapes = d.shapes.slice();
    window.lastCurves = d; pickers(d); draw(d);
  }catch(e){}
}
setInterval(pollCurves, CURVES_MS); pollCurves();
""".replace("CURVES_MS", str(CURVES_MS))

INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>imusic session</title>
<style>@STYLE@</style></head><body><main><h2>imusic session</h2>
<p><a href="/participant" style="color:#9cf">participant page</a> (for the participant's screen)</p>
<p><a href="/experimenter" style="color:#9cf">experimenter page</a> (health, takes, continue / redo / stop)</p>
</main></body></html>"""


def _fill(page: str) -> str:
    return (page.replace("@STYLE@", _STYLE).replace("@POLL@", _POLL)
            .replace("@CURVES@", _CURVES))


PARTICIPANT, EXPERIMENTER, INDEX = _fill(PARTICIPANT), _fill(EXPERIMENTER), _fill(INDEX)
