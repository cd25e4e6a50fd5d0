// The World Models dream in the browser: V's decoder, M and C run in ONNX Runtime Web (models/*.onnx, exported by
// pipeline/web_dream.py); this script only samples z_{t+1} from M's mixture (as models/mdnrnn.py's `sample` does:
// logits / τ, σ·√τ), maps held keys and C's outputs to the actions M reads (tables in dream.json), and draws.
import * as ort from './ort/ort.wasm.min.mjs';

ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page; one is plenty for a batch of one
ort.env.wasm.wasmPaths = {
  mjs: new URL('./ort/ort-wasm-simd-threaded.mjs', import.meta.url).href,
  wasm: new URL('./ort/ort-wasm-simd-threaded.wasm', import.meta.url).href,
};

const FPS = 25; // dream steps a second while running
const $ = (id) => document.getElementById(id);
const status = (text) => { $('status').textContent = text; };
let errors = 0;
const fail = (error) => {
  errors += 1;
  document.body.dataset.errors = String(errors);
  status(`error: ${error && error.message ? error.message : error}`);
  console.error(error);
};
window.addEventListener('error', (e) => fail(e.error || e.message));
window.addEventListener('unhandledrejection', (e) => fail(e.reason));

// -- random draws: a seeded generator, so that a dream replays from its start and seed ------------------------
function generator(seed) {
  let a = seed >>> 0; // mulberry32
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform()),
  };
}

// -- the models ------------------------------------------------------------------------------------
const spec = await (await fetch('dream.json')).json();
const Z = spec.z_dim, A = spec.action_dim, K = spec.mixtures;
const options = { executionProviders: ['wasm'] };
const sessions = {
  decoder: await ort.InferenceSession.create(spec.models.decoder, options),
  m: await ort.InferenceSession.create(spec.models.m, options),
  controller: spec.models.controller ? await ort.InferenceSession.create(spec.models.controller, options) : null,
};

let queue = Promise.resolve(); // one model call at a time: a session runs one call at once
function exclusive(work) {
  const done = queue.then(work);
  queue = done.catch(() => {});
  return done;
}

function stateTensors(values) {
  return spec.state.map((s, i) => (s.dtype === 'bool'
    ? new ort.Tensor('bool', Uint8Array.from(values[i], Number), s.shape)
    : new ort.Tensor('float32', Float32Array.from(values[i]), s.shape)));
}

function feeds(session, z, state, more = {}) {
  const given = { z: new ort.Tensor('float32', z, [1, Z]), ...more };
  spec.state.forEach((s, i) => { given[s.name] = state[i]; });
  return Object.fromEntries(session.inputNames.map((name) => [name, given[name]]));
}

async function mStep(z, input, state) {
  const a = new ort.Tensor('float32', Float32Array.from(input), [1, A]);
  const out = await sessions.m.run(feeds(sessions.m, z, state, { a }));
  return {
    logit: out.logit_pi.data, mu: out.mu.data, logSigma: out.log_sigma.data,
    reward: out.reward.data[0], done: 1 / (1 + Math.exp(-out.done_logit.data[0])),
    state: spec.state.map((s) => out[`next_${s.name}`]),
  };
}

// z_{t+1} from M's mixture at temperature tau, as models/mixture_sampler.py draws it: in each dimension the weights
// w_k = exp(logit_k / tau - max) and their running sums c_k; the uniform u picks the first k with u * c_{K-1} < c_k
// (the softmax's choice); then mu + sigma * sqrt(tau) * eps.
function sampleZ(out, tau, uniforms, normals) {
  const z = new Float32Array(Z);
  const w = new Float64Array(K);
  for (let i = 0; i < Z; i += 1) {
    const row = i * K;
    let top = -Infinity;
    for (let k = 0; k < K; k += 1) top = Math.max(top, out.logit[row + k] / tau);
    let total = 0;
    for (let k = 0; k < K; k += 1) {
      w[k] = Math.exp(out.logit[row + k] / tau - top);
      total += w[k];
    }
    const target = uniforms[i] * total;
    let running = 0, pick = 0;
    for (let k = 0; k < K - 1; k += 1) {
      running += w[k];
      if (running <= target) pick += 1;
    }
    z[i] = out.mu[row + pick] + Math.exp(out.logSigma[row + pick]) * Math.sqrt(tau) * normals[i];
  }
  return z;
}

async function decode(z) {
  const out = await sessions.decoder.run({ z: new ort.Tensor('float32', z, [1, Z]) });
  return out.frame.data; // (64, 64, 3) uint8, as models/vae.py's to_frames gives it
}

async function controllerOutputs(z, state) {
  const out = await sessions.controller.run(feeds(sessions.controller, z, state));
  return out.out.data;
}

// C's tanh outputs -> what M reads: argmax one-hot, or each dimension through its tabulated mapping.
function controllerInput(outputs) {
  const curves = spec.controller.curves;
  if (curves === 'argmax') {
    let best = 0;
    for (let j = 1; j < A; j += 1) if (outputs[j] > outputs[best]) best = j;
    return Array.from({ length: A }, (_, j) => (j === best ? 1 : 0));
  }
  return curves.map((curve, j) => {
    const x = Math.min(1, Math.max(-1, outputs[j]));
    const at = ((x + 1) / 2) * (curve.length - 1);
    const i = Math.min(curve.length - 2, Math.floor(at));
    return curve[i] + (curve[i + 1] - curve[i]) * (at - i);
  });
}

// -- keys --------------------------------------------------------------------------------------------
const KEY_NAMES = { ArrowLeft: 'left', ArrowRight: 'right', ArrowUp: 'up', ArrowDown: 'down', ' ': 'space' };
const held = new Set();

function keysInput(last) {
  const keys = spec.keys;
  const digits = [...held].filter((k) => /^[1-9]$/.test(k)).map(Number).filter((d) => d <= keys.digits.length);
  if (digits.length) return keys.digits[Math.max(...digits) - 1];
  let mask = 0;
  keys.order.forEach((name, i) => { if (held.has(name)) mask |= 1 << i; });
  return keys.combos[mask] ?? last ?? keys.first;
}

// -- the dream a person drives ----------------------------------------------------------------------------
const dream = { start: 0, seed: 0, t: 0, total: 0, dreams: 0, reward: 0, done: 0, driver: 'keys', ended: 0 };
const view = { tau: spec.temperature, running: true, restart: true, lastStep: null, frame: null };

function draw(canvas, pixels) {
  const image = new ImageData(64, 64);
  for (let p = 0; p < 64 * 64; p += 1) {
    image.data.set(pixels.subarray(3 * p, 3 * p + 3), 4 * p);
    image.data[4 * p + 3] = 255;
  }
  const small = new OffscreenCanvas(64, 64);
  small.getContext('2d').putImageData(image, 0, 0);
  const context = canvas.getContext('2d');
  context.imageSmoothingEnabled = false;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function hud() {
  const input = view.lastStep ? view.lastStep.input.map((v) => v.toFixed(2)).join(', ') : '–';
  $('t').textContent = dream.t;
  $('reward').textContent = dream.reward.toFixed(3);
  $('return').textContent = dream.total.toFixed(2);
  $('done').textContent = dream.done.toFixed(3);
  $('done-bar').value = dream.done;
  $('action').textContent = `[${input}]`;
  $('driver-label').textContent = dream.driver === 'C' ? 'C drives' : 'you drive';
  const start = spec.starts[dream.start];
  $('start-label').textContent = `start ${dream.start + 1} of ${spec.starts.length}: episode ${start.episode}, `
    + `frame ${start.t}; dream ${dream.dreams}`;
  document.querySelectorAll('.start').forEach((c, i) => c.classList.toggle('chosen', i === dream.start));
}

function reset(start = dream.start, seed = start) {
  return exclusive(async () => {
    const s = spec.starts[start];
    Object.assign(dream, { start, seed, t: 0, total: 0, reward: 0, done: 0, rng: generator(seed) });
    dream.dreams += 1;
    dream.z = Float32Array.from(s.z);
    dream.state = stateTensors(s.state);
    view.lastStep = null;
    view.frame = await decode(dream.z);
    draw($('dream'), view.frame);
    hud();
  });
}

function stepOnce() {
  return exclusive(async () => {
    const input = dream.driver === 'C'
      ? controllerInput(await controllerOutputs(dream.z, dream.state))
      : keysInput(view.lastStep && view.lastStep.input);
    const out = await mStep(dream.z, input, dream.state);
    const uniforms = Float64Array.from({ length: Z }, dream.rng.uniform);
    const normals = Float64Array.from({ length: Z }, dream.rng.normal);
    const tau = view.tau;
    const z = sampleZ(out, tau, uniforms, normals);
    view.lastStep = { // what tests read: the step's input, tau, M's mixture, the draws and the z they gave
      tau, input, z: Array.from(z), reward: out.reward, done: out.done,
      out: { logit: Array.from(out.logit), mu: Array.from(out.mu), logSigma: Array.from(out.logSigma) },
      uniforms: Array.from(uniforms), normals: Array.from(normals),
    };
    Object.assign(dream, { z, state: out.state, t: dream.t + 1, reward: out.reward, done: out.done });
    dream.total += out.reward;
    view.frame = await decode(z);
    draw($('dream'), view.frame);
    hud();
  }).then(() => {
    if (dream.done > spec.done_threshold) { // M says the episode is over (as a dream in training ends)
      dream.ended += 1;
      const said = `M says dream ${dream.dreams} is over at t ${dream.t} (done probability ${dream.done.toFixed(2)})`;
      if (!view.restart) { status(`${said}; it goes on (R starts a new one)`); return undefined; }
      status(`${said}; a new one begins`);
      return reset((dream.start + 1) % spec.starts.length, dream.seed + 1);
    }
    return undefined;
  });
}

function setDriver(driver) {
  if (driver === 'C' && !sessions.controller) return;
  dream.driver = driver;
  $('driver-c').checked = driver === 'C';
  hud();
}

function setTau(tau) {
  view.tau = tau;
  $('tau').value = String(tau);
  $('tau-value').textContent = tau.toFixed(2);
}

async function runLoop() {
  while (view.running) {
    const began = performance.now();
    await stepOnce();
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 / FPS - (performance.now() - began))));
  }
}

function setRunning(running) {
  const was = view.running;
  view.running = running;
  $('pause').textContent = running ? 'pause (P)' : 'run (P)';
  if (running && !was) runLoop().catch(fail);
}

// -- a real episode beside M's dream of its actions ----------------------------------------------------------
const real = spec.real;
const compare = { t: 0, running: false, realReturn: 0, dreamReturn: 0 };
const strip = real ? await new Promise((resolve, reject) => {
  const image = new Image();
  image.onload = () => resolve(image);
  image.onerror = () => reject(new Error(`${real.frames} did not load`));
  image.src = real.frames;
}) : null;

function drawReal(t) {
  const canvas = $('real');
  const context = canvas.getContext('2d');
  context.imageSmoothingEnabled = false;
  context.drawImage(strip, 0, 64 * t, 64, 64, 0, 0, canvas.width, canvas.height);
}

function compareHud() {
  $('compare-t').textContent = `${compare.t} / ${real.steps}`;
  $('compare-real').textContent = compare.realReturn.toFixed(2);
  $('compare-dream').textContent = compare.dreamReturn.toFixed(2);
}

function compareReset() {
  return exclusive(async () => {
    Object.assign(compare, { t: 0, realReturn: 0, dreamReturn: 0, rng: generator(real.seed) });
    compare.z = Float32Array.from(real.z);
    compare.state = stateTensors(real.state);
    drawReal(0);
    draw($('real-dream'), await decode(compare.z));
    compareHud();
  });
}

function compareStep() {
  return exclusive(async () => {
    const out = await mStep(compare.z, real.actions[compare.t], compare.state);
    const uniforms = Float64Array.from({ length: Z }, compare.rng.uniform);
    const normals = Float64Array.from({ length: Z }, compare.rng.normal);
    compare.z = sampleZ(out, view.tau, uniforms, normals);
    compare.state = out.state;
    compare.realReturn += real.rewards[compare.t];
    compare.dreamReturn += out.reward;
    compare.t += 1;
    drawReal(compare.t);
    draw($('real-dream'), await decode(compare.z));
    compareHud();
  });
}

async function comparePlay(fps = FPS) {
  if (compare.running) return;
  compare.running = true;
  $('compare-play').disabled = true;
  try {
    await compareReset();
    while (compare.t < real.steps) {
      const began = performance.now();
      await compareStep();
      if (fps) await new Promise((r) => setTimeout(r, Math.max(0, 1000 / fps - (performance.now() - began))));
    }
  } finally {
    compare.running = false;
    $('compare-play').disabled = false;
  }
}

// -- the page's controls ------------------------------------------------------------------------------
$('env').textContent = spec.env;
$('keys-help').textContent = spec.keys.help;
setTau(spec.temperature);
$('tau').addEventListener('input', () => setTau(Number($('tau').value)));
$('driver-c').addEventListener('change', () => setDriver($('driver-c').checked ? 'C' : 'keys'));
$('pause').addEventListener('click', () => setRunning(!view.running));
$('restart').addEventListener('change', () => { view.restart = $('restart').checked; });
$('new-dream').addEventListener('click', () => reset((dream.start + 1) % spec.starts.length, dream.seed + 1));
if (!sessions.controller) {
  $('driver-c').disabled = true;
  $('controller-note').textContent = spec.controller_note;
} else {
  $('controller-note').textContent = `C is ${spec.controller.driver}`;
}

for (const [i, s] of spec.starts.entries()) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  canvas.className = 'start';
  canvas.title = `episode ${s.episode}, frame ${s.t}`;
  canvas.addEventListener('click', () => reset(i, i));
  $('starts').append(canvas);
  draw(canvas, await exclusive(() => decode(Float32Array.from(s.z))));
}

const ACTION_KEYS = new Set(['left', 'right', 'up', 'down', 'space', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
function keyName(e) { return KEY_NAMES[e.key] ?? e.key; }
window.addEventListener('keydown', (e) => {
  const name = keyName(e);
  if (ACTION_KEYS.has(name)) {
    e.preventDefault(); // the arrows drive the car, not the slider or the page's scroll
    held.add(name);
    if (dream.driver === 'C') setDriver('keys'); // a key pressed while C drives: you take over
  } else if (name === 'r' || name === 'R') {
    reset((dream.start + 1) % spec.starts.length, dream.seed + 1);
  } else if (name === 'c' || name === 'C') {
    setDriver(dream.driver === 'C' ? 'keys' : 'C');
  } else if (name === 'p' || name === 'P') {
    setRunning(!view.running);
  }
}, { capture: true });
window.addEventListener('keyup', (e) => held.delete(keyName(e)), { capture: true });
window.addEventListener('blur', () => held.clear());

if (real) {
  $('compare-play').addEventListener('click', () => comparePlay().catch(fail));
  $('compare-note').textContent = `seed ${real.seed}: the real env driven by ${real.driver}; M dreams the same `
    + `${real.steps} actions from the same first frame, at the τ above`;
  await compareReset();
} else {
  $('compare').classList.add('unavailable');
  $('compare-play').disabled = true;
  $('compare-note').textContent = spec.real_note;
}

// -- what tests read and drive --------------------------------------------------------------------------
window.__dream = {
  reset, step: async (n = 1) => { for (let i = 0; i < n; i += 1) await stepOnce(); },
  pause: () => setRunning(false), run: () => setRunning(true), setDriver,
  info: () => ({ t: dream.t, start: dream.start, seed: dream.seed, dreams: dream.dreams, ended: dream.ended,
    driver: dream.driver, tau: view.tau, reward: dream.reward, done: dream.done, total: dream.total,
    z: Array.from(dream.z), lastStep: view.lastStep, running: view.running, held: [...held] }),
  frame: () => Array.from(view.frame),
  compare: async () => { await comparePlay(0); return { t: compare.t, dreamReturn: compare.dreamReturn }; },
};

// M stepped from a start (an index into dream.json's starts, or 'real') on given actions and draws: the z after
// each step, with M's reward and done probability. The same mStep and sampleZ as the dream above.
window.__dreamTest = (start, actions, uniforms, normals, tau) => exclusive(async () => {
  const s = start === 'real' ? real : spec.starts[start];
  let z = Float32Array.from(s.z);
  let state = stateTensors(s.state);
  const result = { z: [Array.from(z)], reward: [], done: [] };
  for (let t = 0; t < actions.length; t += 1) {
    const out = await mStep(z, actions[t], state);
    z = sampleZ(out, tau, uniforms[t], normals[t]);
    state = out.state;
    result.z.push(Array.from(z));
    result.reward.push(out.reward);
    result.done.push(out.done);
  }
  return result;
});

await reset(0, 0);
status('ready: drive with the keys, or let C drive');
document.body.dataset.ready = '1';
runLoop().catch(fail);
