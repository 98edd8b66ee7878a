// Interruption (lib/runtime.ts) on its own: work told of Ctrl-C whether the signal came before it asked to be
// told (a signal while connecting, or while a WORKERS worker waits for its snapshot) or after.
import { describe, expect, it } from 'vitest';
import { Interruption } from '../lib/runtime.js';

/** An Interruption whose Ctrl-C the test sends itself, with no process signal. */
function interruptible(): { interruption: Interruption; ctrlC: () => void } {
  let ctrlC = (): void => undefined;
  const interruption = new Interruption((stop) => (ctrlC = stop));
  return { interruption, ctrlC: () => ctrlC() };
}

describe('Interruption', () => {
  it('tells a listener of a Ctrl-C that comes after it registered, once', () => {
    const { interruption, ctrlC } = interruptible();
    let told = 0;
    interruption.onRequest(() => told++);
    expect(told).toBe(0);
    ctrlC();
    expect(interruption.requested).toBe(true);
    expect(told).toBe(1);
  });

  it('tells a listener at once of a Ctrl-C that came before it registered', () => {
    const { interruption, ctrlC } = interruptible();
    ctrlC();
    let told = 0;
    interruption.onRequest(() => told++);
    expect(told).toBe(1);
  });

  it('asks nothing of a listener when no Ctrl-C came', () => {
    const { interruption } = interruptible();
    let told = 0;
    interruption.onRequest(() => told++);
    expect(interruption.requested).toBe(false);
    expect(told).toBe(0);
  });
});
