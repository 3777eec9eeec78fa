/*
 * voxpipe page: talk to `voxpipe serve` over WebRTC. Plain JS, no build step.
 * The whole protocol is in ../PROTOCOL.md; in short:
 *
 * Signalling: one HTTP round trip, no trickle ICE (the offer carries every candidate).
 *   POST api/offer {"sdp", "type": "offer", "token"?, "resume"?}
 *     -> 200 {"sdp", "type": "answer", "pc_id", "call_id", "resume"}
 *     -> 4xx/5xx {"error": {"code", "message"}} (or {"error": "..."}): the message is shown to
 *        the caller, status and code kept in voxpipe.refused; the call fails.
 *   Config: the JSON in <script id="voxpipe-config">, else GET api/config, else no ICE servers.
 *
 * Peer connection: RTCPeerConnection({iceServers}); the audio transceiver first (sendrecv, the
 * microphone with echo cancellation, noise suppression and auto gain), then a data channel
 * named "voxpipe" (ordered).
 *
 * Data channel, page -> server
 *   "ping"                 every 500 ms. pipecat drops output audio when no ping came for 3 s.
 *   {"type": "playout", "rtp", "ssrc_ts", "now", "delay_ms", "requested"?}
 *                          every 100 ms while the agent's audio arrives, and at once on a
 *                          playout_request (then with requested: true). rtp: RTP timestamp of the newest audio the receiver
 *                          played out, at ssrc_ts (ms); now: performance.timeOrigin +
 *                          performance.now(), the same clock; delay_ms: mean playout delay still
 *                          ahead of the speaker (media-playout stats), 0 when unknown. rtp and
 *                          ssrc_ts are null before any audio arrived.
 *   {"type": "hangup"}     the caller hung up (best effort, sent just before closing). A peer
 *                          connection that closes without it may be a network switch.
 * Data channel, server -> page
 *   {"type": "caption", "role": "caller" | "bot", "text", "final"}
 *                          text is the whole utterance so far (it replaces, never appends);
 *                          final closes the utterance.
 *   {"type": "event", "name", "item_id"?}
 *                          "interrupted": mute the agent until "bot_started_speaking" of another
 *                          reply (item_id: the reply playing; a start for a reply that was cut is
 *                          ignored, counted in counters.cutStarts);
 *                          "call_ended": the server ended the call; other names are counted.
 *   {"type": "playout_request"}                            answered with a playout message.
 *   {"type": "signalling", "message": {"type": "peerLeft"}} pipecat's: the call was closed.
 *
 * Network loss: a peer connection that fails (or stays disconnected for 2 s) is replaced by a
 * new one whose offer carries the last "resume" token, so the server can rejoin it to the same
 * call. A 4xx answer, or three failed tries, fails the call.
 *
 * URL options: ?autostart=1 calls at once; ?token=T sends a call token with the first offer.
 * Direct mode (the server's api/config says "direct": true, or ?direct=1): the page asks
 * api/direct/secret for a short-lived provider secret, POSTs its offer to the provider's
 * /realtime/calls itself, opens the "oai-events" channel (the provider's Realtime events:
 * captions come from its transcripts), and tells the server its call id (api/direct/calls),
 * so the server can run the call's tools and guardrails over the provider's sideband. The
 * provider cannot rejoin a call: a lost connection (or rejoin()) makes a new call with a fresh
 * secret, and tells the server the call it replaces ("previous"), whose conversation it seeds
 * the new one with. voxpipe.secretExpiries lists each secret's expires_at (never its value).
 * Test options: ?dsp=0 turns echo cancellation, noise suppression and auto gain off;
 * ?echo_db=-20 mixes the agent's audio back into the microphone at that level (a speakerphone);
 * ?record=1 records what the caller hears of the agent (voxpipe.recordedWav()).
 *
 * window.voxpipe is the page's state as plain data (JSON.stringify reads all of it), with
 * start(), hangup(), setMicMuted(bool), rejoin() and recordedWav() as non-enumerable methods.
 */
"use strict";
(() => {
  const State = Object.freeze({
    IDLE: "idle",
    STARTING: "starting",
    CONNECTING: "connecting",
    CONNECTED: "connected",
    RECONNECTING: "reconnecting",
    ENDED: "ended",
    FAILED: "failed",
  });
  // Every legal move; any other is a bug in this file and is recorded in voxpipe.errors.
  const MOVES = {
    idle: ["starting"],
    starting: ["connecting", "ended", "failed"],
    connecting: ["connected", "reconnecting", "ended", "failed"],
    connected: ["reconnecting", "ended", "failed"],
    reconnecting: ["connecting", "ended", "failed"],
    ended: ["starting"],
    failed: ["starting"],
  };
  const STATUS = {
    idle: "Ready. Press Talk to start a call.",
    starting: "Opening the microphone…",
    connecting: "Connecting…",
    connected: "Connected. Speak whenever you like.",
    reconnecting: "Network changed. Reconnecting to the same call…",
    ended: "Call ended.",
    failed: "The call failed.",
  };
  const LIVE = [State.STARTING, State.CONNECTING, State.CONNECTED, State.RECONNECTING];
  const PING_MS = 500;
  const PLAYOUT_MS = 100;
  const STATS_MS = 500;
  const AUDIO_STALE_MS = 1000; // no RTP for this long: the agent's audio is not playing
  const GATHER_TIMEOUT_MS = 3000;
  const DISCONNECT_GRACE_MS = 2000; // "disconnected" often heals on its own within a second
  const REJOIN_DELAYS_MS = [0, 500, 1500];
  const MAX_REJOINS_UNCONNECTED = 3; // rejoins in a row that never got connected: give up
  const HANGUP_FLUSH_MS = 200; // lets the hangup message leave before the connection closes
  const MAX_KEPT = 200; // captions, events, mutes and errors kept in window.voxpipe
  const MAX_ITEM_CHARS = 80;
  const MAX_CAPTION_CHARS = 4000;
  const MAX_RECORD_S = 600; // ?record=1 keeps at most this much of the agent's audio
  const SOUND_LEVEL = 0.01; // -40 dBFS: a recorded block this loud holds the agent's voice
  // The recorder's worklet: hands the main thread the agent's audio (channel 0) in blocks, and
  // silence while no audio flows, so the recording stays on the AudioContext's clock.
  const RECORDER_WORKLET = `
  registerProcessor("voxpipe-recorder", class extends AudioWorkletProcessor {
    constructor() { super(); this.block = new Float32Array(4096); this.used = 0; }
    process(inputs) {
      const channel = inputs[0] && inputs[0][0];
      for (let i = 0; i < 128; i++) {
        this.block[this.used++] = channel ? channel[i] : 0;
        if (this.used === this.block.length) {
          this.port.postMessage(this.block, [this.block.buffer]);
          this.block = new Float32Array(4096);
          this.used = 0;
        }
      }
      return true;
    }
  });`;

  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const clock = () => Math.round(performance.now());
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const vp = {
    state: State.IDLE,
    pcState: "new",
    iceState: "new",
    dcState: "closed",
    callId: null,
    pcId: null,
    resumed: null, // after a rejoin: did the server keep the same call?
    micMuted: false,
    remoteMuted: false,
    counters: {
      offers: 0, pings: 0, playoutReports: 0, playoutRequests: 0, messages: 0,
      captions: 0, events: 0, ignored: 0, rejoins: 0, errors: 0, cutStarts: 0,
    },
    captions: [], // {role, text, final}
    events: [], // {name, item, at}: item is the event's item_id, or null
    mutes: [], // {muted, item, at}: each time the agent was muted or unmuted, and for which reply
    errors: [], // {where, message, at}
    lastPlayout: null,
    requestedPlayouts: [], // the reports sent in answer to playout_request: where cuts stopped
    playoutDelayMs: 0,
    refused: null, // the last refused offer: {status, code, message}
    secretExpiries: [], // direct mode: expires_at (epoch s) of each provider secret used
    recording: null, // ?record=1: {rate, samples, soundUntil, soundAt, startedAt}
    times: {}, // ms since the page loaded, per moment (started, micReady, answered, <state>)
  };
  window.voxpipe = vp;

  let mic = null; // {stream: what is sent, tracks: the microphone's own, echo: mixer or null}
  let leg = null; // the current peer connection: {pc, dc, timers, grace}
  let resumeToken = null;
  let iceServers = [];
  let rejoinsUnconnected = 0;
  let direct = params.get("direct") === "1"; // or the server's api/config says so
  let botText = ""; // direct mode: the reply's transcript so far
  let playoutPrev = null; // last media-playout counters, for the recent mean delay
  let recorder = null; // ?record=1: {ctx, gain, source, blocks}
  const cutItems = []; // replies the server said were cut (the newest MAX_KEPT)
  const openCaption = { caller: null, bot: null }; // the utterance each side is still saying

  // --- state and the page ---------------------------------------------------------------------

  function setState(next) {
    if (!MOVES[vp.state].includes(next)) {
      noteError("state", new Error(`illegal move ${vp.state} -> ${next}`));
      return;
    }
    vp.state = next;
    vp.times[next] = clock();
    render();
  }

  function render() {
    const status = $("status");
    status.textContent = STATUS[vp.state];
    status.dataset.state = vp.state;
    const live = LIVE.includes(vp.state);
    $("talk").disabled = live;
    const over = vp.state === State.ENDED || vp.state === State.FAILED;
    $("talk").textContent = over ? "Call again" : "Talk";
    $("hangup").disabled = !live;
    $("mute").disabled = !live;
    $("mute").setAttribute("aria-pressed", String(vp.micMuted));
    $("mute").textContent = vp.micMuted ? "Unmute microphone" : "Mute microphone";
  }

  function keep(list, item) {
    list.push(item);
    if (list.length > MAX_KEPT) list.splice(0, list.length - MAX_KEPT);
  }

  function noteError(where, err) {
    const message = String((err && err.message) || err);
    keep(vp.errors, { where, message, at: clock() });
    vp.counters.errors += 1;
    $("note").textContent = message;
  }

  function ignore(why) {
    vp.counters.ignored += 1;
    console.debug("voxpipe: ignored a data-channel message:", why);
  }

  // --- the call -----------------------------------------------------------------------------

  async function start() {
    if (LIVE.includes(vp.state)) return;
    setState(State.STARTING);
    vp.times.started = clock();
    Object.assign(vp, { callId: null, pcId: null, resumed: null, remoteMuted: false });
    vp.refused = null;
    $("note").textContent = "";
    resumeToken = null;
    rejoinsUnconnected = 0;
    try {
      iceServers = await loadIceServers();
      mic = await openMicrophone();
      vp.times.micReady = clock(); // Chromium's fake microphone file starts playing here
      if (vp.state !== State.STARTING) return stopMicrophone(); // hung up meanwhile
      setMicMuted(vp.micMuted);
      const token = params.get("token");
      await (direct ? connectDirect() : connect(token ? { token } : {}));
    } catch (err) {
      failCall("start", err);
    }
  }

  async function connect(extra) {
    setState(State.CONNECTING);
    const pc = new RTCPeerConnection({ iceServers });
    const current = (leg = { pc, dc: null, timers: [], grace: null });
    const track = mic.stream.getAudioTracks()[0];
    pc.addTransceiver(track, { direction: "sendrecv", streams: [mic.stream] }); // audio first
    current.dc = pc.createDataChannel("voxpipe", { ordered: true });
    wire(current);
    await pc.setLocalDescription();
    await iceGatheringComplete(pc);
    if (leg !== current) return; // hung up or replaced meanwhile
    const local = pc.localDescription;
    const answer = await postOffer({ sdp: local.sdp, type: local.type, ...extra });
    if (leg !== current) return;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    vp.times.answered = clock();
    if (extra.resume) vp.resumed = answer.call_id === vp.callId;
    vp.callId = answer.call_id ?? null;
    vp.pcId = answer.pc_id ?? null;
    resumeToken = answer.resume ?? null;
  }

  async function connectDirect(previous = null) {
    setState(State.CONNECTING);
    const secret = await postJson("api/direct/secret", {});
    keep(vp.secretExpiries, secret.expires_at);
    const pc = new RTCPeerConnection({ iceServers });
    const current = (leg = { pc, dc: null, timers: [], grace: null, direct: true });
    const track = mic.stream.getAudioTracks()[0];
    pc.addTransceiver(track, { direction: "sendrecv", streams: [mic.stream] });
    current.dc = pc.createDataChannel("oai-events", { ordered: true });
    wire(current);
    await pc.setLocalDescription();
    await iceGatheringComplete(pc);
    if (leg !== current) return;
    vp.counters.offers += 1;
    const response = await fetch(secret.calls_url, {
      method: "POST",
      body: pc.localDescription.sdp,
      headers: { authorization: `Bearer ${secret.value}`, "content-type": "application/sdp" },
    });
    const text = await response.text();
    if (!response.ok) {
      let reply = null;
      try {
        reply = JSON.parse(text);
      } catch {
        // not JSON: the text is the reason
      }
      const { code, message } = refusal(reply, text, response);
      vp.refused = { status: response.status, code, message };
      throw new Error(`the provider refused the call (${response.status}): ${message}`);
    }
    if (leg !== current) return;
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    vp.times.answered = clock();
    vp.callId = (response.headers.get("location") || "").split("/").pop() || null;
    if (previous) vp.resumed = false; // a new call, seeded by the server
    await postJson("api/direct/calls", previous ? { call_id: vp.callId, previous }
      : { call_id: vp.callId });
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const reply = await response.json().catch(() => null);
    if (!response.ok || !reply) throw new Error(`${url} answered ${response.status}`);
    return reply;
  }

  function wire(current) {
    const { pc, dc } = current;
    const mine = (handler) => (...args) => {
      if (leg === current) handler(...args);
    };
    if (current.direct) {
      const remote = (ev) => playRemote(ev.streams[0] || new MediaStream([ev.track]));
      pc.addEventListener("track", mine(remote));
      pc.addEventListener("connectionstatechange", mine(() => onConnectionState(current)));
      dc.addEventListener("open", mine(() => (vp.dcState = "open")));
      dc.addEventListener("close", mine(() => (vp.dcState = "closed")));
      dc.addEventListener("message", mine((ev) => onProviderEvent(ev.data)));
      return;
    }
    const remote = (ev) => playRemote(ev.streams[0] || new MediaStream([ev.track]));
    pc.addEventListener("track", mine(remote));
    pc.addEventListener("connectionstatechange", mine(() => onConnectionState(current)));
    const ice = () => (vp.iceState = pc.iceConnectionState);
    pc.addEventListener("iceconnectionstatechange", mine(ice));
    dc.addEventListener("open", mine(() => (vp.dcState = "open")));
    dc.addEventListener("close", mine(() => (vp.dcState = "closed")));
    dc.addEventListener("message", mine((ev) => onMessage(ev.data)));
    current.timers.push(
      setInterval(mine(() => sendPing(current)), PING_MS),
      setInterval(mine(() => reportPlayout(current, false)), PLAYOUT_MS),
      setInterval(mine(() => readPlayoutStats(current).catch((e) => noteError("stats", e))),
        STATS_MS),
    );
  }

  function onConnectionState(current) {
    const state = (vp.pcState = current.pc.connectionState);
    clearTimeout(current.grace);
    if (state === "connected" && vp.state === State.CONNECTING) {
      rejoinsUnconnected = 0;
      setState(State.CONNECTED);
    } else if (state === "failed") {
      rejoin("the connection failed");
    } else if (state === "disconnected") {
      current.grace = setTimeout(() => rejoin("the connection was lost"), DISCONNECT_GRACE_MS);
    }
  }

  // Relayed, a rejoin is the same call again (the server's resume token); direct, the
  // provider cannot rejoin, so it is a new call with a fresh secret.
  async function rejoin(reason = "a rejoin was asked for") {
    if (vp.state !== State.CONNECTING && vp.state !== State.CONNECTED) return;
    if (!direct && !resumeToken) {
      return failCall("rejoin", new Error(`${reason}, and the server gave no resume token`));
    }
    const [unconnected, spent] = direct
      ? ["new calls never connected", "no new call could be made"]
      : ["rejoins never connected", "the call could not be rejoined"];
    if (++rejoinsUnconnected > MAX_REJOINS_UNCONNECTED) {
      const tries = MAX_REJOINS_UNCONNECTED;
      return failCall("rejoin", new Error(`${reason}, and ${tries} ${unconnected}`));
    }
    const previous = vp.callId;
    const attempt = () => (direct ? connectDirect(previous) : connect({ resume: resumeToken }));
    setState(State.RECONNECTING);
    vp.counters.rejoins += 1;
    closeLeg();
    for (const delay of REJOIN_DELAYS_MS) {
      await sleep(delay);
      if (vp.state !== State.RECONNECTING) return; // hung up meanwhile
      try {
        await attempt();
        return;
      } catch (err) {
        noteError("rejoin", err);
        closeLeg();
        if (vp.state === State.CONNECTING) setState(State.RECONNECTING);
        // A refused resume (4xx) cannot succeed later; a new direct call asks anew.
        if (!direct && err.status >= 400 && err.status < 500) break;
      }
    }
    failCall("rejoin", new Error(`${reason}, and ${spent}`));
  }

  function hangup() {
    if (!LIVE.includes(vp.state)) return;
    const current = leg;
    leg = null;
    if (current && !current.direct && current.dc.readyState === "open") {
      current.dc.send(JSON.stringify({ type: "hangup" }));
    }
    if (current) setTimeout(() => closeConnection(current), HANGUP_FLUSH_MS);
    finish(State.ENDED, "");
  }

  function failCall(where, err) {
    noteError(where, err);
    if (LIVE.includes(vp.state)) finish(State.FAILED, null);
  }

  function finish(state, note) {
    closeLeg();
    stopMicrophone();
    $("remote").srcObject = null;
    for (const role of Object.keys(openCaption)) openCaption[role] = null;
    if (note !== null) $("note").textContent = note;
    setState(state);
  }

  function closeLeg() {
    const current = leg;
    leg = null;
    if (current) closeConnection(current);
    vp.dcState = "closed";
    vp.pcState = "closed";
  }

  function closeConnection(current) {
    current.timers.forEach(clearInterval);
    clearTimeout(current.grace);
    current.pc.close();
  }

  // --- signalling -----------------------------------------------------------------------------

  async function loadIceServers() {
    let config = {};
    try {
      config = JSON.parse($("voxpipe-config").textContent || "{}");
    } catch (err) {
      noteError("config", err);
    }
    if (!Array.isArray(config.iceServers)) {
      const response = await fetch("api/config").catch(() => null);
      if (response && response.ok) config = await response.json().catch(() => ({}));
    }
    if (config.direct === true) direct = true;
    vp.direct = direct;
    return Array.isArray(config.iceServers) ? config.iceServers : [];
  }

  function iceGatheringComplete(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => pc.iceGatheringState === "complete" && resolve();
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHER_TIMEOUT_MS); // send what was gathered so far
    });
  }

  async function postOffer(body) {
    vp.counters.offers += 1;
    const response = await fetch("api/offer", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    let reply = null;
    try {
      reply = JSON.parse(text);
    } catch {
      // an error page that is not JSON: its text is the reason
    }
    if (!response.ok || !reply || typeof reply.sdp !== "string") {
      const { code, message } = refusal(reply, text, response);
      vp.refused = { status: response.status, code, message };
      const err = new Error(`the server refused the call (${response.status}): ${message}`);
      err.status = response.status;
      throw err;
    }
    return reply;
  }

  function refusal(reply, text, response) {
    const error = reply && reply.error;
    if (error && typeof error === "object") {
      const code = typeof error.code === "string" ? error.code.slice(0, 80) : null;
      const message = typeof error.message === "string" ? error.message.slice(0, 200) : "";
      return { code, message: message || code || response.statusText };
    }
    if (typeof error === "string" && error) return { code: null, message: error.slice(0, 200) };
    return { code: null, message: text.slice(0, 200) || response.statusText };
  }

  // --- audio ----------------------------------------------------------------------------------

  async function openMicrophone() {
    const dsp = params.get("dsp") !== "0";
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: dsp, noiseSuppression: dsp, autoGainControl: dsp },
    });
    const echoDb = params.get("echo_db");
    if (echoDb === null) return { stream, tracks: stream.getAudioTracks(), echo: null };
    // A speakerphone without echo cancellation: microphone plus the agent at echo_db.
    const ctx = new AudioContext();
    await ctx.resume();
    const out = ctx.createMediaStreamDestination();
    ctx.createMediaStreamSource(stream).connect(out);
    const gain = ctx.createGain();
    const level = 10 ** (Number(echoDb) / 20);
    gain.gain.value = level;
    gain.connect(out);
    return { stream: out.stream, tracks: stream.getAudioTracks(), echo: { ctx, gain, level } };
  }

  function stopMicrophone() {
    if (!mic) return;
    mic.tracks.forEach((track) => track.stop());
    if (mic.echo) mic.echo.ctx.close();
    mic = null;
  }

  function setMicMuted(muted) {
    vp.micMuted = Boolean(muted);
    if (mic) mic.tracks.forEach((track) => (track.enabled = !vp.micMuted));
    render();
  }

  function playRemote(stream) {
    const audio = $("remote");
    audio.srcObject = stream; // a remote track reaches WebAudio only while an element plays it
    if (mic && mic.echo) mic.echo.ctx.createMediaStreamSource(stream).connect(mic.echo.gain);
    if (params.get("record") === "1") record(stream).catch((err) => noteError("record", err));
    setRemoteMuted(vp.remoteMuted);
    audio.play().catch((err) => {
      noteError("audio", err);
      $("note").textContent = "Click anywhere on the page to hear the agent.";
      document.addEventListener("click", () => audio.play(), { once: true });
    });
  }

  function setRemoteMuted(muted, item = null) {
    if (muted !== vp.remoteMuted) keep(vp.mutes, { muted, item, at: clock() });
    vp.remoteMuted = muted;
    $("remote").muted = muted;
    if (mic && mic.echo) mic.echo.gain.gain.value = muted ? 0 : mic.echo.level; // nothing heard
    if (recorder) recorder.gain.gain.value = muted ? 0 : 1;
  }

  // --- ?record=1: what the caller heard of the agent, for tests --------------------------------

  async function record(stream) {
    if (!recorder) recorder = await openRecorder();
    if (recorder.source) recorder.source.disconnect(); // a rejoin's new stream replaces it
    recorder.source = recorder.ctx.createMediaStreamSource(stream);
    recorder.source.connect(recorder.gain);
  }

  async function openRecorder() {
    const ctx = new AudioContext();
    const url = URL.createObjectURL(new Blob([RECORDER_WORKLET], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    await ctx.resume();
    const gain = ctx.createGain(); // follows remoteMuted: the recording is what was heard
    gain.gain.value = vp.remoteMuted ? 0 : 1;
    const node = new AudioWorkletNode(ctx, "voxpipe-recorder", { numberOfOutputs: 0 });
    gain.connect(node);
    const made = { ctx, gain, source: null, blocks: [] };
    const kept = (vp.recording = {
      rate: ctx.sampleRate, samples: 0, soundUntil: 0, soundAt: null, startedAt: null,
    });
    node.port.onmessage = ({ data }) => {
      if (kept.samples >= MAX_RECORD_S * ctx.sampleRate) return;
      if (kept.startedAt === null) kept.startedAt = clock();
      made.blocks.push(data);
      kept.samples += data.length;
      if (data.some((sample) => Math.abs(sample) > SOUND_LEVEL)) {
        kept.soundUntil = kept.samples;
        kept.soundAt = clock();
      }
    };
    return made;
  }

  /** What was recorded so far: base64 of a mono 16-bit PCM WAV at the AudioContext's rate. */
  function recordedWav() {
    if (!recorder) throw new Error("nothing recorded: open the page with ?record=1 and call");
    const samples = recorder.blocks.reduce((n, block) => n + block.length, 0);
    const view = new DataView(new ArrayBuffer(44 + samples * 2));
    const ascii = (at, text) => [...text].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
    const rate = recorder.ctx.sampleRate;
    ascii(0, "RIFF");
    view.setUint32(4, 36 + samples * 2, true);
    ascii(8, "WAVEfmt ");
    view.setUint32(16, 16, true); // fmt chunk size
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true); // bytes per second
    view.setUint16(32, 2, true); // bytes per frame
    view.setUint16(34, 16, true); // bits per sample
    ascii(36, "data");
    view.setUint32(40, samples * 2, true);
    let at = 44;
    for (const block of recorder.blocks) {
      for (const sample of block) {
        view.setInt16(at, Math.max(-1, Math.min(1, sample)) * 32767, true);
        at += 2;
      }
    }
    const bytes = new Uint8Array(view.buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  // --- the data channel -----------------------------------------------------------------------

  function sendPing(current) {
    if (current.dc.readyState !== "open") return;
    current.dc.send("ping");
    vp.counters.pings += 1;
  }

  function playoutReport(current) {
    const transceiver = current.pc.getTransceivers()[0];
    const source = transceiver ? transceiver.receiver.getSynchronizationSources()[0] : undefined;
    return {
      type: "playout",
      rtp: source ? source.rtpTimestamp : null,
      ssrc_ts: source ? source.timestamp : null,
      now: performance.timeOrigin + performance.now(),
      delay_ms: vp.playoutDelayMs,
    };
  }

  function reportPlayout(current, requested) {
    if (!current || current.dc.readyState !== "open") return;
    const report = playoutReport(current);
    if (requested) report.requested = true; // where the cut stopped the agent (it mutes now)
    const playing = report.ssrc_ts !== null && report.now - report.ssrc_ts < AUDIO_STALE_MS;
    if (!playing && !requested) return;
    current.dc.send(JSON.stringify(report));
    vp.lastPlayout = report;
    if (requested) keep(vp.requestedPlayouts, report);
    vp.counters.playoutReports += 1;
  }

  async function readPlayoutStats(current) {
    if (current.pc.connectionState !== "connected") return;
    const stats = await current.pc.getStats();
    stats.forEach((r) => {
      if (r.type !== "media-playout" || !r.totalSamplesCount) return;
      // The mean over the last interval (the totals grow for the page's whole life).
      const now = { samples: r.totalSamplesCount, delay: r.totalPlayoutDelay };
      const prev = playoutPrev && playoutPrev.samples <= now.samples ? playoutPrev : null;
      const samples = now.samples - (prev ? prev.samples : 0);
      const delay = now.delay - (prev ? prev.delay : 0);
      if (samples > 0) vp.playoutDelayMs = (delay / samples) * 1000;
      playoutPrev = now;
    });
  }

  function onMessage(data) {
    vp.counters.messages += 1;
    if (typeof data !== "string") return ignore("not text");
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return ignore("not JSON");
    }
    if (!message || typeof message !== "object") return ignore("not an object");
    switch (message.type) {
      case "caption":
        return onCaption(message);
      case "event":
        return onEvent(message);
      case "playout_request":
        vp.counters.playoutRequests += 1;
        return reportPlayout(leg, true);
      case "signalling":
        if (message.message && message.message.type === "peerLeft") {
          return finish(State.ENDED, "The agent ended the call.");
        }
        return ignore("signalling");
      default:
        return ignore(`unknown type ${String(message.type).slice(0, 40)}`);
    }
  }

  // Direct mode: the provider's Realtime events, kept by type, and its transcripts as captions.
  function onProviderEvent(data) {
    vp.counters.messages += 1;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return ignore("not JSON");
    }
    if (!event || typeof event.type !== "string") return ignore("not an event");
    const item = typeof event.item_id === "string" ? event.item_id.slice(0, MAX_ITEM_CHARS) : null;
    keep(vp.events, { name: event.type.slice(0, 80), item, at: clock() });
    vp.counters.events += 1;
    if (event.type === "response.output_audio_transcript.delta") {
      botText += String(event.delta || "");
      onCaption({ role: "bot", text: botText.trim(), final: false });
    } else if (event.type === "response.output_audio_transcript.done") {
      botText = "";
      onCaption({ role: "bot", text: String(event.transcript || "").trim(), final: true });
    } else if (event.type === "response.done" && botText) {
      botText = ""; // cut (a guardrail, a barge-in): what was said so far stays
      const open = openCaption.bot;
      if (open) onCaption({ role: "bot", text: open.entry.text, final: true });
    } else if (event.type === "conversation.item.input_audio_transcription.completed") {
      onCaption({ role: "caller", text: String(event.transcript || "").trim(), final: true });
    }
  }

  function onEvent({ name, item_id: itemId }) {
    if (typeof name !== "string") return ignore("event without a name");
    const item = typeof itemId === "string" ? itemId.slice(0, MAX_ITEM_CHARS) : null;
    if (name === "bot_started_speaking" && item !== null && cutItems.includes(item)) {
      vp.counters.cutStarts += 1; // a reply that was cut does not speak again: stay muted
      return;
    }
    keep(vp.events, { name: name.slice(0, 80), item, at: clock() });
    vp.counters.events += 1;
    if (name === "interrupted") {
      if (item !== null) keep(cutItems, item);
      setRemoteMuted(true, item);
    } else if (name === "bot_started_speaking") setRemoteMuted(false, item);
    else if (name === "call_ended") finish(State.ENDED, "The agent ended the call.");
  }

  function onCaption({ role, text, final }) {
    if (role !== "caller" && role !== "bot") return ignore("caption role");
    if (typeof text !== "string" || typeof final !== "boolean") return ignore("caption fields");
    vp.counters.captions += 1;
    let open = openCaption[role];
    if (!open) {
      const li = document.createElement("li");
      li.className = role;
      $("captions").append(li);
      open = openCaption[role] = { entry: { role, text: "", final: false }, li };
      keep(vp.captions, open.entry);
      const list = $("captions");
      while (list.children.length > MAX_KEPT) list.firstElementChild.remove();
    }
    open.entry.text = text.slice(0, MAX_CAPTION_CHARS);
    open.entry.final = final;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "caller" ? "You:" : "Agent:";
    open.li.replaceChildren(who, document.createTextNode(open.entry.text));
    open.li.classList.toggle("interim", !final);
    if (final) openCaption[role] = null;
    open.li.scrollIntoView({ block: "nearest" });
  }

  // --- wiring ---------------------------------------------------------------------------------

  const methods = { start, hangup, setMicMuted, rejoin: () => rejoin(), recordedWav };
  for (const [name, fn] of Object.entries(methods)) {
    Object.defineProperty(vp, name, { value: fn, enumerable: false });
  }
  $("talk").addEventListener("click", start);
  $("hangup").addEventListener("click", hangup);
  $("mute").addEventListener("click", () => setMicMuted(!vp.micMuted));
  window.addEventListener("online", () => {
    if (leg && vp.state === State.CONNECTED && leg.pc.connectionState !== "connected") {
      rejoin("the network changed");
    }
  });
  window.addEventListener("pagehide", hangup);
  render();
  if (params.get("autostart") === "1") start();
})();
