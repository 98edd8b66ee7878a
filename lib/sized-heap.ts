// The run's first step, imported before every other module: holds V8's heap growth small before the
// migrator's modules run (their loading has already sized the young generation; it grows no further).
import { sizeHeap } from './runtime.js';

sizeHeap();
