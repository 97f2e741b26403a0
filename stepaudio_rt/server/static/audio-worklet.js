// Audio worklets for the page: microphone -> PCM16 24 kHz chunks, and gapless playback of reply audio.
// Both run on the audio thread, so capture and playback never stutter when the page's main thread is busy.
// The AudioContext is created at 24 kHz where the browser allows it; otherwise (`sampleRate` differs)
// these processors convert by linear interpolation, which is plenty for speech.

const WIRE_RATE = 24000;
const CHUNK_SAMPLES = 960; // 40 ms at 24 kHz per input_audio_buffer.append: within the 20-100 ms norm

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / WIRE_RATE; // input samples per output sample
    this.pos = 0; // fractional read position into `carry`
    this.carry = new Float32Array(0);
    this.out = new Int16Array(CHUNK_SAMPLES);
    this.fill = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    // Prepend what was left from the previous block so interpolation spans block borders.
    const buf = new Float32Array(this.carry.length + ch.length);
    buf.set(this.carry);
    buf.set(ch, this.carry.length);
    let pos = this.pos;
    while (pos + 1 < buf.length) {
      const i = Math.floor(pos);
      const f = pos - i;
      const v = buf[i] * (1 - f) + buf[i + 1] * f;
      this.out[this.fill++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.fill === CHUNK_SAMPLES) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(CHUNK_SAMPLES);
        this.fill = 0;
      }
      pos += this.ratio;
    }
    const keep = Math.floor(pos);
    this.carry = buf.slice(keep);
    this.pos = pos - keep;
    return true;
  }
}

class PcmPlayer extends AudioWorkletProcessor {
  // Messages in:  {type: "audio", pcm: ArrayBuffer (Int16 24 kHz)}, {type: "clear"}, {type: "item"}
  // Messages out: {type: "cleared", playedSamples}, {type: "idle"} when the queue runs dry.
  constructor() {
    super();
    this.queue = []; // Float32Array chunks at the context rate
    this.offset = 0; // read offset into queue[0]
    this.played = 0; // wire-rate samples played of the current item
    this.step = WIRE_RATE / sampleRate; // wire samples per output sample
    this.playing = false;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      const pcm = new Int16Array(msg.pcm);
      const n = Math.round(pcm.length / this.step);
      const out = new Float32Array(n);
      for (let j = 0; j < n; j++) {
        const x = j * this.step;
        const i = Math.floor(x);
        const f = x - i;
        const a = pcm[Math.min(i, pcm.length - 1)];
        const b = pcm[Math.min(i + 1, pcm.length - 1)];
        out[j] = (a * (1 - f) + b * f) / 32768;
      }
      this.queue.push(out);
      this.playing = true;
    } else if (msg.type === "clear") {
      this.queue = [];
      this.offset = 0;
      this.playing = false;
      this.port.postMessage({ type: "cleared", playedSamples: Math.round(this.played) });
    } else if (msg.type === "item") {
      this.played = 0;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    let k = 0;
    while (k < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - k, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), k);
      k += n;
      this.offset += n;
      this.played += n * this.step;
      if (this.offset >= head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, k);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (this.playing && !this.queue.length) {
      this.playing = false;
      this.port.postMessage({ type: "idle" });
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
registerProcessor("pcm-player", PcmPlayer);
