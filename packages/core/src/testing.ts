// First: refuses an unsupported Node.js before undici loads (see util/node-version.ts).
import './util/node-version.js';
export { createRecordingTransport, createTestDispatcher, drain } from './testing/recording.js';
export type { RecordedAnswer, RecordedRequest, RecordingTransport } from './testing/recording.js';
