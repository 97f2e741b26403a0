// The browser client: microphone -> /v1/realtime (OpenAI Realtime GA events) -> reply audio + text.
// The server decides when a turn ends (semantic_vad: an end-of-turn model at each pause); the page only
// streams audio and reacts to events.
// URL options: ?server=ws://host:port/v1/realtime  ?key=API_KEY  ?model=NAME  ?vad=server_vad|semantic_vad
//              ?thinking=sequential|think_first|speak_first

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const WIRE_RATE = 24000;

const ui = {
  server: $("server"), key: $("api-key"), start: $("start"), status: $("status"), mic: $("mic-state"),
  latency: $("latency"), replyAudio: $("reply-audio"), transcript: $("transcript"), reasoning: $("reasoning"),
};
ui.server.value = params.get("server") ||
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/realtime`;
ui.key.value = params.get("key") || "";

let live = null; // the running session: {ws, ctx, stream, capture, player}
let replySamples = 0;
let speechStoppedAt = null; // performance.now() at input_audio_buffer.speech_stopped
let firstPacketSeen = false;
let current = null; // the response being received: {id, itemId, line, audio}
let playingItem = null; // item id whose audio the player holds
const userLines = new Map(); // user item id -> its transcript element (filled when transcription arrives)

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
  document.body.dataset.error = isError ? "1" : "";
}

function setState(state) {
  document.body.dataset.state = state;
  ui.start.textContent = state === "idle" ? "Start talking" : "Stop";
}

function addLine(who, cls, text = "") {
  const div = document.createElement("div");
  div.className = `turn ${cls}`;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(name, body);
  ui.transcript.append(div);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return body;
}

function b64FromBuffer(buf) {
  const bytes = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function bufferFromB64(b64) {
  const s = atob(b64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes.buffer;
}

// Counters on <body data-*> let tests (and curious users in devtools) see what happened.
function bump(name) {
  document.body.dataset[name] = String(Number(document.body.dataset[name] || 0) + 1);
}

function send(event) {
  if (live && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(event));
}

// ---- starting and stopping ----

async function openAudio() {
  // 24 kHz when the browser allows it (Chrome), so no resampling happens anywhere; else the native rate.
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: WIRE_RATE, latencyHint: "interactive" });
  } catch {
    ctx = new AudioContext({ latencyHint: "interactive" });
  }
  await ctx.audioWorklet.addModule(new URL("audio-worklet.js", import.meta.url));
  await ctx.resume();
  return ctx;
}

async function openMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This browser cannot capture audio here: the page must be served over https or from localhost.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new Error("Microphone access was denied. Allow the microphone for this page (the icon in the " +
        "address bar) and press Start again.");
    }
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      throw new Error("No microphone was found. Connect one and press Start again.");
    }
    throw new Error(`Cannot open the microphone: ${err.message || err.name}`);
  }
}

function openSocket(url, key) {
  return new Promise((resolve, reject) => {
    let target;
    try {
      target = new URL(url);
      target.searchParams.set("model", params.get("model") || "step-audio-r1");
      target.searchParams.set("reasoning_events", "1"); // our extension: stream the <think> text
    } catch {
      reject(new Error(`"${url}" is not a valid WebSocket URL (ws://host:port/v1/realtime).`));
      return;
    }
    // Browsers cannot set headers: the key travels as a subprotocol, and "realtime" must be accepted.
    const protocols = ["realtime"];
    if (key) protocols.push(`openai-insecure-api-key.${key}`);
    const ws = new WebSocket(target, protocols);
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onerror = () => {
      if (!opened) reject(new Error(`Cannot reach the server at ${url}. Is it running?`));
    };
    ws.onclose = (e) => {
      if (!opened) reject(new Error(`Cannot reach the server at ${url} (closed with code ${e.code}).`));
    };
    ws.onmessage = (e) => {
      const ev = JSON.parse(e.data);
      if (ev.type === "session.created") resolve(ws);
      else if (ev.type === "error") reject(new Error(`Server refused the session: ${ev.error.message}`));
    };
  });
}

async function start() {
  ui.start.disabled = true;
  setStatus("Connecting…");
  let ctx = null;
  let stream = null;
  try {
    ctx = await openAudio();
    stream = await openMic();
    const ws = await openSocket(ui.server.value.trim(), ui.key.value.trim());
    const capture = new AudioWorkletNode(ctx, "pcm-capture");
    const player = new AudioWorkletNode(ctx, "pcm-player", { outputChannelCount: [1] });
    player.connect(ctx.destination);
    ctx.createMediaStreamSource(stream).connect(capture);
    live = { ws, ctx, stream, capture, player };
    // semantic_vad by default: a finished question ends at the first short pause, a hesitation does not.
    // Transcription shows what the server heard (whisper-1 = the server's local Whisper).
    // ?thinking=speak_first|think_first|sequential: think-while-speaking (default: the server's).
    const session = { type: "realtime", audio: { input: {
      turn_detection: { type: params.get("vad") || "semantic_vad" },
      transcription: { model: params.get("transcription") || "whisper-1" } } } };
    if (params.get("thinking")) session.stepaudio = { thinking_mode: params.get("thinking") };
    send({ type: "session.update", session });
    capture.port.onmessage = (e) => send({ type: "input_audio_buffer.append", audio: b64FromBuffer(e.data) });
    player.port.onmessage = (e) => onPlayer(e.data);
    ws.onmessage = (e) => onEvent(JSON.parse(e.data));
    ws.onerror = null;
    ws.onclose = (e) => {
      if (live && live.ws === ws) {
        stop();
        setStatus(`Disconnected from the server (code ${e.code}${e.reason ? `: ${e.reason}` : ""}).`, true);
      }
    };
    setState("live");
    ui.mic.textContent = "listening";
    setStatus("Listening. Ask a question; pause when you are done.");
  } catch (err) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    setState("idle");
    ui.mic.textContent = "off";
    setStatus(err.message || String(err), true);
  } finally {
    ui.start.disabled = false;
  }
}

function stop() {
  if (!live) return;
  const { ws, ctx, stream } = live;
  live = null;
  stream.getTracks().forEach((t) => t.stop());
  ctx.close();
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  setState("idle");
  ui.mic.textContent = "off";
  setStatus("Stopped.");
}

ui.start.addEventListener("click", () => (live ? stop() : start()));
$("controls").addEventListener("submit", (e) => e.preventDefault()); // Enter in a field must not reload

// ---- server events ----

function onPlayer(msg) {
  if (msg.type === "cleared" && playingItem) {
    // Barge-in: tell the server how much of the reply was actually heard, so history matches reality.
    send({ type: "conversation.item.truncate", item_id: playingItem, content_index: 0,
           audio_end_ms: Math.floor(msg.playedSamples / (WIRE_RATE / 1000)) });
    playingItem = null;
  } else if (msg.type === "idle") {
    playingItem = null;
  }
}

function onEvent(ev) {
  switch (ev.type) {
    case "input_audio_buffer.speech_started":
      ui.mic.textContent = "hearing you";
      if (playingItem) {
        live.player.port.postMessage({ type: "clear" }); // barge-in: stop playback now
        bump("bargeIns");
      }
      break;
    case "input_audio_buffer.speech_stopped":
      ui.mic.textContent = "listening";
      speechStoppedAt = performance.now();
      firstPacketSeen = false;
      break;
    case "input_audio_buffer.committed": {
      const line = addLine("You", "user", "…");
      line.dataset.pending = "1";
      userLines.set(ev.item_id, line);
      break;
    }
    case "conversation.item.input_audio_transcription.delta": {
      const line = userLines.get(ev.item_id);
      if (line) {
        if (line.dataset.pending) { line.textContent = ""; delete line.dataset.pending; }
        line.textContent += ev.delta;
      }
      break;
    }
    case "conversation.item.input_audio_transcription.completed": {
      const line = userLines.get(ev.item_id);
      if (line) { line.textContent = ev.transcript.trim() || "(nothing recognised)"; delete line.dataset.pending; }
      userLines.delete(ev.item_id);
      bump("transcripts");
      break;
    }
    case "conversation.item.input_audio_transcription.failed": {
      const line = userLines.get(ev.item_id);
      if (line) { line.textContent = "(spoken question; transcription failed)"; delete line.dataset.pending; }
      userLines.delete(ev.item_id);
      break;
    }
    case "response.created":
      current = { id: ev.response.id, itemId: null, line: addLine("Assistant", "assistant") };
      if (ui.reasoning.childNodes.length) ui.reasoning.append(Object.assign(document.createElement("div"), { className: "sep" }));
      current.reasoning = document.createElement("span");
      ui.reasoning.append(current.reasoning);
      setStatus("Thinking…");
      break;
    case "response.reasoning_text.delta":
      if (current) current.reasoning.textContent += ev.delta;
      break;
    case "response.output_audio_transcript.delta":
    case "response.output_text.delta":
      if (current) current.line.textContent += ev.delta;
      setStatus("Answering…");
      break;
    case "response.output_audio.delta": {
      if (!firstPacketSeen && speechStoppedAt !== null) {
        firstPacketSeen = true;
        ui.latency.textContent = `${Math.round(performance.now() - speechStoppedAt)} ms after end of speech`;
      }
      if (playingItem !== ev.item_id) {
        playingItem = ev.item_id;
        live.player.port.postMessage({ type: "item" });
      }
      const pcm = bufferFromB64(ev.delta);
      replySamples += pcm.byteLength / 2;
      ui.replyAudio.textContent = `${(replySamples / WIRE_RATE).toFixed(1)} s`;
      document.body.dataset.replyAudioMs = String(Math.round(replySamples / (WIRE_RATE / 1000)));
      live.player.port.postMessage({ type: "audio", pcm }, [pcm]);
      break;
    }
    case "response.done": {
      const status = ev.response.status;
      if (current) {
        if (status === "cancelled") current.line.parentElement.classList.add("cancelled");
        current.line.parentElement.dataset.status = status;
      }
      bump("responses");
      setStatus(status === "failed" ? `The response failed: ${ev.response.status_details?.error?.message || ""}`
        : "Listening. Ask another question, or speak over the answer to interrupt.", status === "failed");
      current = null;
      break;
    }
    case "conversation.item.truncated":
      bump("truncated");
      break;
    case "error":
      setStatus(`Server error: ${ev.error.message}`, true);
      break;
    default:
      break;
  }
}
