// A file-backed stand-in for the datapath, for CONTRACT TESTS ONLY (stdin/stdout/exit codes of a
// real plugin process). main.ts uses it when INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH names a state
// file; nothing touches the kernel. The file lets a test set up veths and failures and read back
// what the plugin did, across processes (guarded by the same lock as the spool).
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import type { AttachmentKey, Attached, HostVeth, PluginDatapath } from './datapath';
import { keyText } from './datapath';
import { withLock } from './lockfile';

export const FAKE_DATAPATH_ENV = 'INT_HOST_REPORTER_PLUGIN_FAKE_DATAPATH';

export interface FakeAttachment {
  key: AttachmentKey;
  hostIfindex: number;
  mode: 'tcx' | 'tc';
  programIds: number[];
}

export interface FakeDatapathState {
  /** "<netns>|<ifname>" -> host side of the pair */
  veths: Record<string, HostVeth>;
  /** keyText(key) -> attachment */
  attachments: Record<string, FakeAttachment>;
  /** make the named operation throw this message */
  fail?: Partial<Record<'findHostVeth' | 'attach' | 'detach' | 'isAttached' | 'listAttachments', string>>;
  /** every call, in order: "attach net/cid/eth0@19" ... */
  calls: string[];
}

export function createFakeDatapath(stateFile: string): PluginDatapath {
  const update = <T>(fn: (state: FakeDatapathState) => T): T =>
    withLock(`${stateFile}.lock`, () => {
      const state = JSON.parse(readFileSync(stateFile, 'utf8')) as FakeDatapathState;
      const result = fn(state);
      const tmp = `${stateFile}.tmp-${process.pid}`;
      writeFileSync(tmp, JSON.stringify(state, null, 2));
      renameSync(tmp, stateFile);
      return result;
    });
  const failIfAsked = (state: FakeDatapathState, op: keyof NonNullable<FakeDatapathState['fail']>): void => {
    const message = state.fail?.[op];
    if (message) throw new Error(message);
  };

  return {
    findHostVeth: (netns, ifname) => update((state) => {
      state.calls.push(`findHostVeth ${netns} ${ifname}`);
      failIfAsked(state, 'findHostVeth');
      const veth = state.veths[`${netns}|${ifname}`];
      if (!veth) throw new Error(`no interface ${ifname} in netns ${netns}`);
      return veth;
    }),
    attach: (hostIfindex, key): Attached => update((state) => {
      state.calls.push(`attach ${keyText(key)}@${hostIfindex}`);
      failIfAsked(state, 'attach');
      const attachment: FakeAttachment = { key, hostIfindex, mode: 'tcx', programIds: [hostIfindex * 10 + 1, hostIfindex * 10 + 2] };
      state.attachments[keyText(key)] = attachment;
      return { mode: attachment.mode, programIds: attachment.programIds };
    }),
    detach: (key) => update((state) => {
      state.calls.push(`detach ${keyText(key)}`);
      failIfAsked(state, 'detach');
      delete state.attachments[keyText(key)];
    }),
    isAttached: (hostIfindex, key) => update((state) => {
      state.calls.push(`isAttached ${keyText(key)}@${hostIfindex}`);
      failIfAsked(state, 'isAttached');
      return state.attachments[keyText(key)]?.hostIfindex === hostIfindex;
    }),
    listAttachments: (network) => update((state) => {
      state.calls.push(`listAttachments ${network}`);
      failIfAsked(state, 'listAttachments');
      return Object.values(state.attachments).map((a) => a.key).filter((k) => k.network === network);
    }),
  };
}
