// The per-key error log, in the Python script's record format, and how a binary key is shown to a person:
// printable ASCII as is, every other byte escaped, so a log line is always one readable line.
import { closeSync, openSync, writeSync } from 'node:fs';
import { displayKey } from '../records.js';

/** Python logging's default asctime: local time, "2024-05-01 12:00:00,123". */
function logTimestamp(date: Date): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())},${pad(date.getMilliseconds(), 3)}`
  );
}

/** One line per reason, so a multi-line server error cannot break the one-record-per-line format. */
export function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

export class ErrorLog {
  private readonly fd: number;

  /** Opens at start, as the script does: mode w truncates even when no error follows. */
  constructor(readonly path: string, mode: 'w' | 'a') {
    this.fd = openSync(path, mode);
  }

  keyFailed(key: Buffer, reason: string): void {
    this.write(`Failed to migrate key |${displayKey(key)}|: ${oneLine(reason)}`);
  }

  /** A key copied without something the target cannot hold (hash-field expiries on a server that has none). */
  keyDegraded(key: Buffer, without: string): void {
    this.write(`Migrated key |${displayKey(key)}| without ${oneLine(without)}`, 'WARNING');
  }

  /** A function library FUNCTION LOAD refused (or could not be sent), named as its code names it. */
  libraryFailed(name: string, reason: string): void {
    this.write(`Failed to load function library |${name}|: ${oneLine(reason)}`);
  }

  write(message: string, level: 'ERROR' | 'WARNING' = 'ERROR'): void {
    writeSync(this.fd, `[${logTimestamp(new Date())} - ${level} - ${message}]\n`);
  }

  close(): void {
    closeSync(this.fd);
  }
}
