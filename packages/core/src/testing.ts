export { createRecordingTransport, createTestDispatcher, drain } from './testing/recording.js';
export type { RecordedAnswer, RecordedRequest, RecordingTransport } from './testing/recording.js';
