// How long the tool's script calls hold each server during a row: the mean EVAL time from INFO commandstats
// and the longest from SLOWLOG. A long call blocks every other client of that server for its whole length.
import { info } from './bench-rows.js';
import type { RedisServer } from '../test/helpers/servers.js';

/** Redis's default slowlog threshold, set explicitly so a changed default cannot change what is reported. */
export const SLOW_CALL_MS = 10;
/** Room for every slow call of a row: the log keeps only the newest entries, and the longest may be an old one. */
const SLOWLOG_LENGTH = 1024;

/** Set once per server before its baseline config is taken, so resetting the target between rows keeps it. */
export async function logSlowCalls(server: RedisServer): Promise<void> {
  await server.cmd('CONFIG', 'SET', 'slowlog-log-slower-than', String(SLOW_CALL_MS * 1000), 'slowlog-max-len', String(SLOWLOG_LENGTH));
}

/** One server's script calls over a row. Server time only: network and queueing are not in it. */
export interface ScriptCalls {
  calls: number;
  /** Mean time of one EVAL; undefined when there was none. */
  meanMs?: number;
  /** Longest EVAL; undefined when none took SLOW_CALL_MS or more (the slowlog keeps only those). */
  longestMs?: number;
}

interface EvalTotals {
  calls: number;
  usec: number;
}

/** The tool sends its scripts as EVAL (the text travels each time), so cmdstat_eval counts all of them. */
async function evalTotals(server: RedisServer): Promise<EvalTotals> {
  const line = /^cmdstat_eval:(.*)$/m.exec(await info(server, 'commandstats'))?.[1] ?? '';
  const field = (name: string): number => Number(new RegExp(`(?:^|,)${name}=([\\d.]+)`).exec(line)?.[1] ?? 0);
  return { calls: field('calls'), usec: field('usec') };
}

/** The longest EVAL in the slowlog, in ms; undefined when no call reached the threshold. */
async function longestLoggedEvalMs(server: RedisServer): Promise<number | undefined> {
  const entries = await server.cmd('SLOWLOG', 'GET', '-1');
  let longestUs: number | undefined;
  for (const entry of Array.isArray(entries) ? entries : []) {
    // Each entry: id, unix time, duration in µs, the command's arguments, client address, client name.
    if (!Array.isArray(entry) || !Array.isArray(entry[3])) continue;
    if (String(entry[3][0]).toUpperCase() !== 'EVAL') continue;
    const us = Number(entry[2]);
    if (longestUs === undefined || us > longestUs) longestUs = us;
  }
  return longestUs === undefined ? undefined : longestUs / 1000;
}

/**
 * Starts watching a server's script calls; the function returned reads what the row did. Totals are
 * differenced rather than reset, so nothing else in INFO is disturbed; the slowlog is emptied first.
 */
export async function watchScriptCalls(server: RedisServer): Promise<() => Promise<ScriptCalls>> {
  const before = await evalTotals(server);
  await server.cmd('SLOWLOG', 'RESET');
  return async () => {
    const after = await evalTotals(server);
    const calls = after.calls - before.calls;
    const meanMs = calls > 0 ? (after.usec - before.usec) / calls / 1000 : undefined;
    return { calls, meanMs, longestMs: await longestLoggedEvalMs(server) };
  };
}
