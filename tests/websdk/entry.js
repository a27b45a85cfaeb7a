// The page side of tests/test_websdk_browser.py: Convai's Web SDK used the way its README's "Core API"
// section shows (new ConvaiClient(config), connect(), sendUserTextMessage(), the client's events), with every
// event recorded on window.harness.events for the test to read through Selenium. No test logic lives here.
import { ConvaiClient } from "@convai/web-sdk/core";

const events = [];
const waiters = [];
let client = null;

function record(name, value) {
  events.push({ name, value, at: performance.now() });
  for (const waiter of waiters.splice(0)) waiter();
}

// Resolves with the first recorded event named `name` at index >= `from` (the test awaits it through
// Selenium's executeAsyncScript, whose script timeout is the deadline).
function nextEvent(name, from = 0) {
  return new Promise((resolve) => {
    const look = () => {
      const index = events.findIndex((e, i) => i >= from && e.name === name);
      if (index >= 0) resolve({ index, value: events[index].value });
      else waiters.push(look);
    };
    look();
  });
}

// Resolves with the chat once it holds a finished message of `type` whose content includes `text`.
function chatHas(type, text) {
  return new Promise((resolve) => {
    const look = () => {
      const chat = messages();
      if (chat.some((m) => m.type === type && !m.isStreaming && m.content.includes(text))) resolve(chat);
      else waiters.push(look);
    };
    look();
  });
}

function messages() {
  return client ? client.chatMessages.map((m) => ({ type: m.type, content: m.content, isStreaming: !!m.isStreaming })) : [];
}

function connect(config) {
  client = new ConvaiClient(config);
  for (const name of ["connect", "disconnect", "botReady", "speakingChange", "turnEnd", "error"]) {
    client.on(name, (value) => record(name, value === undefined ? null : JSON.parse(JSON.stringify(value, errorFields))));
  }
  client.on("stateChange", (state) => record("stateChange", { ...state }));
  // The SDK turns an action-response into a chat entry "Actions: " + actions.join(", ") (its MessageHandler),
  // which renders each documented {name, target} object as "[object Object]"; a web game on this SDK reads the
  // actions' names and targets from the data messages of the SDK's own room, as here.
  client.room.on("dataReceived", (payload) => {
    let message;
    try {
      message = JSON.parse(new TextDecoder().decode(payload));
    } catch (error) {
      record("unparsedData", String(error));  // the SDK's own handler drops these too; the test sees them
      return;
    }
    if (message.type === "action-response") record("actionResponse", message.data);
  });
  client.on("messagesChange", () => record("messagesChange", messages()));
  // The character's voice: the remote audio track LiveKit delivers (the SDK leaves playback to the app).
  client.room.on("trackSubscribed", (track, publication, participant) => {
    record("trackSubscribed", { kind: track.kind, participant: participant.identity, source: publication.source });
    if (track.kind === "audio") {
      const element = track.attach();
      // Played as an app would play it (headless Chromium renders to a fake output device): the receiver
      // measures the audio it plays out.
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

// A request as given (method, headers, body), sent from this page's origin, so the browser's CORS preflight
// and checks apply as they do to the SDK's own fetch; the answer as the SDK reads it (ok, status, text).
async function request(url, init) {
  try {
    const response = await fetch(url, init);
    return { ok: response.ok, status: response.status, statusText: response.statusText, text: await response.text() };
  } catch (error) {
    return { failed: String(error && error.message || error) };
  }
}

window.harness = {
  events,
  voice: null,
  connect,
  client: () => client,
  nextEvent,
  chatHas,
  sendText: (text) => client.sendUserTextMessage(text),
  microphone: (on) => (on ? client.audioControls.enableAudio() : client.audioControls.disableAudio()),
  disconnect: () => client.disconnect().then(() => true),
  voiceStats,
  request,
  messages,
  state: () => client.state,
};
