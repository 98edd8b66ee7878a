// The exit status: one rule for every mode, from how the run ended. The codes are documented in the README.

export const EXIT = {
  ok: 0,
  settingsOrConnection: 1,
  keysFailed: 2,
  errorLimitReached: 3,
  differencesFound: 4,
  interrupted: 130,
} as const;

/** How a run (or one database of it) ended, as far as its exit status goes. */
export interface Ending {
  /** Ctrl-C or SIGTERM before the work was done (live mode's Ctrl-C is its cutover, not this). */
  interrupted?: boolean;
  /** A server lost for good, a refusal of the whole run, or a source whose slots moved (the run is not complete). */
  stoppedEarly?: boolean;
  errorLimitReached?: boolean;
  /** Keys, and function libraries, that could not be copied. */
  failed?: number;
  /** Differences found by a comparison or a verification, libraries included. */
  differences?: number;
}

export function exitStatus(ending: Ending): number {
  if (ending.interrupted) return EXIT.interrupted;
  if (ending.stoppedEarly) return EXIT.settingsOrConnection;
  if (ending.errorLimitReached) return EXIT.errorLimitReached;
  if ((ending.failed ?? 0) > 0) return EXIT.keysFailed;
  if ((ending.differences ?? 0) > 0) return EXIT.differencesFound;
  return EXIT.ok;
}

/** Exit statuses from several databases: the most serious wins. */
export function worse(a: number, b: number): number {
  const rank: number[] = [EXIT.ok, EXIT.differencesFound, EXIT.keysFailed, EXIT.errorLimitReached, EXIT.settingsOrConnection, EXIT.interrupted];
  return rank.indexOf(b) > rank.indexOf(a) ? b : a;
}
