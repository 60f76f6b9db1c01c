import { createMemoryStore } from '../src/backend.js';
import { storeContract } from './store-contract.js';

storeContract('memory', (limits) => createMemoryStore(limits));
