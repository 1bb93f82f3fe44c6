/**
 * The one value codec of sluice: msgpack, keeping Uint8Array, Date, maps and lists. Every backend
 * stores values with it and the runtime's hand-off carries them with it, so a value reads back the same
 * whatever wrote it.
 */
import { Packr } from 'msgpackr';

/** The one value codec of sluice (msgpack; keeps Uint8Array, Date, maps and lists). */
export const codec = new Packr({ useRecords: false, moreTypes: false, structuredClone: false, mapsAsObjects: true, variableMapSize: true });
