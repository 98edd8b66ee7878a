// CHECKPOINT_FILE in live mode read as a replica: each master's replication id and the offset applied to the
// target, written atomically every second once its stream is being applied, so a killed run continues each
// stream by partial resync (PSYNC <replid> <offset+1>) instead of copying everything again.
import { CheckpointError, LIVE_FORMAT, readCheckpointDocument, writeAtomically, type Fingerprint } from '../copy/checkpoint.js';
import type { StreamPosition } from '../sources/replica-link.js';


interface LiveCheckpointDocument {
  format: string;
  fingerprint: Fingerprint;
  masters: StreamPosition[];
  updatedAt: string;
}

const EVERY_MS = 1000;

/** The positions a previous live run recorded, or undefined when the file does not exist yet. */
export function readStreamCheckpoint(path: string, fingerprint: Fingerprint): StreamPosition[] | undefined {
  const doc = readCheckpointDocument<LiveCheckpointDocument>(path, LIVE_FORMAT, fingerprint);
  if (!doc) return undefined;
  const valid = Array.isArray(doc.masters) && doc.masters.every((m) => typeof m.address === 'string' && /^[0-9a-f]{40}$/i.test(m.replicationId) && Number.isSafeInteger(m.offset) && Number.isSafeInteger(m.db));
  if (!valid) throw new CheckpointError(`CHECKPOINT_FILE ${path} is not a checkpoint of this tool; remove it to start over`);
  return doc.masters;
}

/** Writes the positions `now` gives every second, and once more at the end; each write whole (or not at all). */
export class StreamCheckpoint {
  private readonly timer: NodeJS.Timeout;
  private writing: Promise<void> = Promise.resolve();
  /** The first write that failed (a full disk, a folder removed): said at the end, never silent. */
  problem: string | undefined;

  constructor(private readonly path: string, private readonly fingerprint: Fingerprint, private readonly now: () => StreamPosition[]) {
    this.timer = setInterval(() => void this.save(), EVERY_MS);
  }

  async finish(): Promise<void> {
    clearInterval(this.timer);
    await this.save();
  }

  private save(): Promise<void> {
    const doc: LiveCheckpointDocument = { format: LIVE_FORMAT, fingerprint: this.fingerprint, masters: this.now(), updatedAt: new Date().toISOString() };
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    this.writing = this.writing.then(() => writeAtomically(this.path, text)).catch((err: unknown) => {
      this.problem ??= err instanceof Error ? err.message : String(err);
    });
    return this.writing;
  }
}
