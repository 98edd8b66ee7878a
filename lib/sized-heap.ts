// The run's first step, imported before every other module: the launcher's process starts the sized-heap
// run at once and waits for it, so the two processes do not load the migrator one after the other.
import { runWithSizedHeap } from './runtime.js';

// ES modules are all loaded before any is evaluated, but their evaluation waits here: in the launcher's
// process this never returns (it exits with the run's status), so no connection or setting is ever made there.
await runWithSizedHeap();
