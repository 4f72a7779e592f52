"""The HTML of ``imusic session --web``'s pages (served by imusic/session_web.py).

Both pages poll ``/state`` (imusic/session_state.py) every ``POLL_MS`` and fill elements by
id, which the browser tests (tests/imusic/test_session_web.py) read: the participant page's
``prompt``, ``remaining``, ``face`` / ``face-note``; the experimenter page's ``rate``,
``loss``, ``battery``, ``samples``, ``prompt``, the ``takes`` table and the ``continue``,
``redo`` and ``stop`` buttons (a row's own ``redo`` button names its task).
"""

POLL_MS = 250
"""How often the pages ask for ``/state`` (milliseconds)."""

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
</script></body></html>"""

INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>imusic session</title>
<style>@STYLE@</style></head><body><main><h2>imusic session</h2>
<p><a href="/participant" style="color:#9cf">participant page</a> (for the participant's screen)</p>
<p><a href="/experimenter" style="color:#9cf">experimenter page</a> (health, takes, continue / redo / stop)</p>
</main></body></html>"""


def _fill(page: str) -> str:
    return page.replace("@STYLE@", _STYLE).replace("@POLL@", _POLL)


PARTICIPANT, EXPERIMENTER, INDEX = _fill(PARTICIPANT), _fill(EXPERIMENTER), _fill(INDEX)
