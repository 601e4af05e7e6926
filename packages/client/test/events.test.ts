import { describe, expect, it } from 'vitest';
import { Emitter } from '../src/events.ts';

describe('Emitter', () => {
  it('keeps events fired before the first listener and hands them over in order', () => {
    const e = new Emitter<{ failed: number; state: string }>(['failed']);
    e.emit('failed', 1);
    e.emit('failed', 2);
    e.emit('state', 'connected'); // not kept
    const got: number[] = [];
    const states: string[] = [];
    e.on('failed', (n) => got.push(n));
    e.on('state', (s) => states.push(s));
    e.emit('failed', 3);
    expect(got).toEqual([1, 2, 3]);
    expect(states).toEqual([]);
  });

  it('bounds what it keeps and survives a throwing listener', () => {
    const e = new Emitter<{ m: number }>(['m'], 2);
    for (let i = 0; i < 5; i++) e.emit('m', i);
    const got: number[] = [];
    e.on('m', () => {
      throw new Error('bug');
    });
    const off = e.on('m', (n) => got.push(n));
    e.emit('m', 9);
    off();
    e.emit('m', 10);
    expect(got).toEqual([9]);
  });
});
