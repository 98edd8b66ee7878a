// The run's first step, imported before every other module: V8's old generation set to grow in small steps
// before the migrator's modules run (lib/runtime.ts says why and what it was measured to cost).
import { sizeHeap } from './runtime.js';

sizeHeap();
