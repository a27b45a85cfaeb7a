// The page side of tests/test_websdk_browser.py: Convai's Web SDK used the way its README's "Core API"
// section shows (new ConvaiClient(config), connect(), sendUserTextMessage(), the client's events), with every
// event recorded on window.harness.events for the test to read through Selenium. No test logic lives here.
import { ConvaiClient } from "@convai/web-sdk/core";

const events = [];
let client = null;

function record(name, value) {
  events.push({ name, value, at: performance.now() });
}

function connect(config) {
  client = new ConvaiClient(config);
  for (const name of ["connect", "disconnect", "botReady", "speakingChange", "turnEnd", "error"]) {
    client.on(name, (value) => record(name, value === undefined ? null : JSON.parse(JSON.stringify(value, errorFields))));
  }
  client.on("stateChange", (state) => record("stateChange", { ...state }));
  client.on("messagesChange", (messages) => record("messagesChange", messages.map((m) => ({ type: m.type, content: m.content, isStreaming: !!m.isStreaming }))));
  // The character's voice: the remote audio track LiveKit delivers (the SDK leaves playback to the app).
  client.room.on("trackSubscribed", (track, publication, participant) => {
    record("trackSubscribed", { kind: track.kind, participant: participant.identity, source: publication.source });
    if (track.kind === "audio") {
      const element = track.attach();
      element.muted = true; // nothing to hear in a headless test; the element keeps the track flowing
      document.body.appendChild(element);
      window.harness.voice = track;
    }
  });
  return client.connect().then(() => true, (error) => {
    record("connectFailed", String(error && error.message || error));
    return false;
  });
}

function errorFields(key, value) {
  return value instanceof Error ? { message: value.message } : value;
}

// Loudness of the character's voice as the browser receives it: RTCInboundRtpStreamStats' totalAudioEnergy
// and totalSamplesReceived (WebRTC statistics), so the test measures samples, not wall-clock time.
async function voiceStats() {
  const track = window.harness.voice;
  if (!track || !track.receiver) return null;
  const report = await track.receiver.getStats();
  for (const stats of report.values()) {
    if (stats.type === "inbound-rtp" && stats.kind === "audio") {
      return { totalAudioEnergy: stats.totalAudioEnergy || 0, totalSamplesReceived: stats.totalSamplesReceived || 0,
               totalSamplesDuration: stats.totalSamplesDuration || 0 };
    }
  }
  return null;
}

window.harness = {
  events,
  voice: null,
  connect,
  client: () => client,
  sendText: (text) => client.sendUserTextMessage(text),
  microphone: (on) => client.audioControls.enableAudio ? (on ? client.audioControls.enableAudio() : client.audioControls.disableAudio())
    : client.room.localParticipant.setMicrophoneEnabled(on),
  disconnect: () => client.disconnect().then(() => true),
  voiceStats,
  messages: () => client.chatMessages.map((m) => ({ type: m.type, content: m.content, isStreaming: !!m.isStreaming })),
  state: () => client.state,
};
