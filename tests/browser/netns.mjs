// Impaired networks for the browser tests: each person can sit in a Linux network namespace
// of their own, joined by a veth pair to a bridge that this file creates in the root
// namespace on a private /24 it picks itself (10.213.X.0/24, one no interface here uses).
// The portal and its media node listen on the bridge's address (10.213.X.1), so what a
// namespaced Chromium sends and receives crosses its veth, where the test can:
//   - cap the bandwidth each way (`tc qdisc tbf`: downlink on the bridge side of the veth,
//     uplink inside the namespace),
//   - drop a share of packets at random (nftables `numgen random mod 1000 < N drop`),
//   - drop all UDP (a school firewall that allows only TCP),
//   - cut the link for a while (an outage).
// Every rule lives in the namespace or on the interfaces this file created; nothing else on
// the machine is touched. Everything is torn down after the suite, on a failed setup, at
// process exit (also on SIGINT/SIGTERM), and left-overs of a killed run (names carry the
// pid, which is then dead) are swept at the next start or by `node netns.mjs --sweep`.
// Every command is bounded in time. Needs root, iproute2 and nftables (install.sh).
//
//   const suite = netnsSuite('firewall', { namespaces: ['pupil'] });
//   suite.test('…', async (s) => {
//     const pupilNet = suite.net.ns('pupil');
//     await pupilNet.shape({ down: '500kbit' });
//     const pupil = await s.person('pupil', { browser: await pupilNet.browser(suite.portal) });
//     …
//   });

import { execFile, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { aulaSuite, launchBrowser, secureOriginFlags, ARTIFACTS, CHROMIUM } from './harness.mjs';

const IP = fs.existsSync('/usr/sbin/ip') ? '/usr/sbin/ip' : 'ip';
const NFT = fs.existsSync('/usr/sbin/nft') ? '/usr/sbin/nft' : 'nft';
const TC = fs.existsSync('/usr/sbin/tc') ? '/usr/sbin/tc' : 'tc';
/** No command here takes long; one that hangs must not hang the test. */
const COMMAND_MS = 10_000;
/** The private range the bridges are made in (one /24 of it per suite). */
const RANGE = '10.213';
// Names carry the pid, so a later run can tell left-overs of a dead one from a live run's.
const NS_PREFIX = 'aula-t';
const LINK_PREFIX = 'au';

function run(cmd, args, { input, timeout = COMMAND_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`;
        reject(err);
      } else {
        resolve(stdout);
      }
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

function runSync(cmd, args) {
  try {
    execFileSync(cmd, args, { timeout: COMMAND_MS, stdio: 'ignore', killSignal: 'SIGKILL' });
    return true;
  } catch {
    return false;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** Namespaces and links whose owning process is gone (a run that was killed). */
function staleNames() {
  const namespaces = execFileSync(IP, ['netns', 'list'], { timeout: COMMAND_MS })
    .toString()
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => {
      const m = n.match(new RegExp(`^${NS_PREFIX}(\\d+)-`));
      return m && !alive(Number(m[1]));
    });
  const links = execFileSync(IP, ['-o', 'link', 'show'], { timeout: COMMAND_MS })
    .toString()
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0])
    .filter((n) => {
      const m = n?.match(new RegExp(`^${LINK_PREFIX}(\\d+)[bh]\\d+$`));
      return m && !alive(Number(m[1]));
    });
  return { namespaces, links };
}

/** Removes what killed runs left behind; returns what it removed. */
export function sweepStale() {
  const { namespaces, links } = staleNames();
  for (const n of namespaces) runSync(IP, ['netns', 'del', n]);
  for (const l of links) runSync(IP, ['link', 'del', l]);
  return [...namespaces, ...links];
}

// Everything alive in this process, for the exit handler.
const live = new Set();
let exitHooked = false;
function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const net of live) net.destroySync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(signal, () => {
      for (const net of live) net.destroySync();
      process.exit(128 + (os.constants.signals[signal] ?? 0));
    });
  }
}

let bridges = 0;

/** A bridge on 10.213.X.1/24 in the root namespace and the namespaces hanging off it. */
export class Network {
  /** Creates the bridge on a /24 that no interface of this machine has an address in. */
  static async create() {
    if (process.getuid?.() !== 0) throw new Error('network namespaces need root');
    sweepStale();
    hookExit();
    const name = `${LINK_PREFIX}${process.pid}b${bridges++}`;
    for (let attempt = 0; attempt < 20; attempt++) {
      const x = 1 + Math.floor(Math.random() * 254);
      const subnet = `${RANGE}.${x}`;
      if ((await addressesIn(subnet)).length > 0) continue;
      const net = new Network(name, subnet);
      live.add(net);
      try {
        await run(IP, ['link', 'add', name, 'type', 'bridge']);
        net.#bridgeMade = true;
        // No IPv6 on the test links: ICE would only gather link-local candidates there.
        await run('sysctl', ['-q', '-w', `net.ipv6.conf.${name}.disable_ipv6=1`]).catch(() => {});
        await run(IP, ['addr', 'add', `${net.gateway}/24`, 'dev', name]);
        await run(IP, ['link', 'set', name, 'up']);
        // Another run may have picked the same /24 at the same moment: then both try again.
        if ((await addressesIn(subnet)).length === 1) return net;
      } catch (e) {
        await net.destroy();
        throw e;
      }
      await net.destroy();
    }
    throw new Error(`found no free /24 in ${RANGE}.0.0/16 for the test network`);
  }

  constructor(bridge, subnet) {
    this.bridge = bridge;
    this.subnet = subnet;
    /** The bridge's address: where the portal and the media node listen. */
    this.gateway = `${subnet}.1`;
    this.namespaces = new Map();
  }

  #bridgeMade = false;
  #hosts = 10;

  /** A new namespace `label` with its own address on the bridge (10.213.X.10, .11, …). */
  async add(label) {
    if (this.namespaces.has(label)) throw new Error(`namespace ${label} exists already`);
    const n = this.#hosts++;
    const ns = new Namespace(this, label, n);
    this.namespaces.set(label, ns);
    await ns.create();
    return ns;
  }

  /** The namespace `label`. */
  ns(label) {
    const ns = this.namespaces.get(label);
    if (!ns) throw new Error(`no namespace ${label} (have: ${[...this.namespaces.keys()].join(', ')})`);
    return ns;
  }

  /** Closes the namespaces' browsers, deletes the namespaces and the bridge. */
  async destroy() {
    await Promise.all([...this.namespaces.values()].map((ns) => ns.destroy()));
    if (this.#bridgeMade) await run(IP, ['link', 'del', this.bridge]).catch(() => {});
    this.#bridgeMade = false;
    live.delete(this);
  }

  /** The same at process exit, where nothing asynchronous runs any more. */
  destroySync() {
    for (const ns of this.namespaces.values()) ns.destroySync();
    if (this.#bridgeMade) runSync(IP, ['link', 'del', this.bridge]);
    this.#bridgeMade = false;
    live.delete(this);
  }
}

async function addressesIn(subnet) {
  const out = await run(IP, ['-o', '-4', 'addr', 'show']);
  return out.split('\n').filter((l) => l.includes(` ${subnet}.`));
}

/** One person's network: a namespace whose eth0 is a veth into the bridge. */
export class Namespace {
  constructor(net, label, n) {
    this.net = net;
    this.label = label;
    this.name = `${NS_PREFIX}${process.pid}-${n}`;
    /** The bridge side of the veth (in the root namespace): the downlink's qdisc. */
    this.hostLink = `${LINK_PREFIX}${process.pid}h${n}`;
    this.address = `${net.subnet}.${n}`;
    this.rules = { lossPerMille: 0, dropUdp: false, outage: false, blockedTcpPorts: [] };
    this.browsers = [];
    this.#timers = new Set();
  }

  #made = false;
  #timers;
  #wrapper = null;

  async create() {
    const peer = `${LINK_PREFIX}${process.pid}n${this.address.split('.')[3]}`;
    await run(IP, ['netns', 'add', this.name]);
    this.#made = true;
    await run(IP, ['link', 'add', this.hostLink, 'type', 'veth', 'peer', 'name', peer, 'netns', this.name]);
    await run(IP, ['link', 'set', this.hostLink, 'master', this.net.bridge]);
    await run('sysctl', ['-q', '-w', `net.ipv6.conf.${this.hostLink}.disable_ipv6=1`]).catch(() => {});
    await run(IP, ['link', 'set', this.hostLink, 'up']);
    await this.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1']).catch(() => {});
    await run(IP, [
      '-n', this.name, '-batch', '-',
    ], {
      input: [
        'link set lo up',
        `link set ${peer} name eth0`,
        `addr add ${this.address}/24 dev eth0`,
        'link set eth0 up',
      ].join('\n'),
    });
    // No default route: the bridge's /24 is all this namespace can reach, so nothing a test
    // browser does leaves the machine.
    await this.#applyRules();
  }

  /** Runs a command inside the namespace. */
  exec(cmd, args, options) {
    return run(IP, ['netns', 'exec', this.name, cmd, ...args], options);
  }

  /**
   * Caps the bandwidth (tc tbf; rates as tc writes them: '500kbit', '2mbit'); `null` or
   * leaving one out removes that cap. `burst` is the bucket, `latency` how long a packet
   * may wait in the queue before it is dropped.
   */
  async shape({ down = null, up = null, burst = '16kb', latency = '200ms' } = {}) {
    const tbf = (dev, rate, inNs) => {
      const base = inNs ? ['-n', this.name] : [];
      return rate
        ? run(TC, [...base, 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency])
        : run(TC, [...base, 'qdisc', 'del', 'dev', dev, 'root']).catch(() => {});
    };
    await tbf(this.hostLink, down, false);
    await tbf('eth0', up, true);
  }

  /** Drops `perMille` of the packets each way, at random (0 stops it). */
  async loss(perMille) {
    this.rules.lossPerMille = Math.max(0, Math.min(1000, Math.round(perMille)));
    await this.#applyRules();
  }

  /** Drops all UDP each way (a firewall that lets only TCP through), or stops that. */
  async dropUdp(on = true) {
    this.rules.dropUdp = on;
    await this.#applyRules();
  }

  /** Drops TCP to and from `port` (a firewall that also blocks TURN over TCP), or stops that. */
  async blockTcp(port, on = true) {
    const ports = new Set(this.rules.blockedTcpPorts);
    if (on) ports.add(port);
    else ports.delete(port);
    this.rules.blockedTcpPorts = [...ports];
    await this.#applyRules();
  }

  /** Drops every packet each way for `ms`; resolves when the link is back. */
  async outage(ms) {
    this.rules.outage = true;
    await this.#applyRules();
    await new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        resolve();
      }, ms);
      this.#timers.add(t);
    });
    this.rules.outage = false;
    await this.#applyRules();
  }

  /** No caps, no drops. */
  async clear() {
    this.rules = { lossPerMille: 0, dropUdp: false, outage: false, blockedTcpPorts: [] };
    await this.#applyRules();
    await this.shape({});
  }

  /** What the shapers passed so far: `{ down: {bytes, packets, dropped}, up: … }` (tc -s). */
  async shaperStats() {
    const parse = (out) => {
      const m = out.match(/Sent (\d+) bytes (\d+) pkt \(dropped (\d+)/);
      return m ? { bytes: Number(m[1]), packets: Number(m[2]), dropped: Number(m[3]) } : null;
    };
    const down = parse(await run(TC, ['-s', 'qdisc', 'show', 'dev', this.hostLink, 'root']));
    const up = parse(await run(TC, ['-n', this.name, '-s', 'qdisc', 'show', 'dev', 'eth0', 'root']));
    return { down, up };
  }

  /** What the nftables rules dropped so far (packets), counted per rule. */
  async dropCounters() {
    const out = await this.exec(NFT, ['list', 'table', 'inet', 'aula']);
    const counts = {};
    for (const m of out.matchAll(/counter packets (\d+) bytes \d+ drop comment "([^"]+)"/g)) {
      counts[m[2]] = (counts[m[2]] ?? 0) + Number(m[1]);
    }
    return counts;
  }

  async #applyRules() {
    const { lossPerMille, dropUdp, outage, blockedTcpPorts } = this.rules;
    const rules = ['iif lo accept', 'oif lo accept'];
    if (outage) rules.push('counter drop comment "outage"');
    if (dropUdp) rules.push('meta l4proto udp counter drop comment "udp"');
    for (const port of blockedTcpPorts) {
      rules.push(`tcp dport ${Number(port)} counter drop comment "tcp ${Number(port)}"`);
      rules.push(`tcp sport ${Number(port)} counter drop comment "tcp ${Number(port)}"`);
    }
    if (lossPerMille > 0) rules.push(`numgen random mod 1000 < ${lossPerMille} counter drop comment "loss"`);
    const chain = (hook) =>
      `  chain ${hook} {\n    type filter hook ${hook} priority 0; policy accept;\n` +
      rules.filter((r) => !r.startsWith(hook === 'input' ? 'oif' : 'iif')).map((r) => `    ${r}\n`).join('') +
      '  }\n';
    // Replaced as one transaction: the table is never half there.
    const ruleset =
      'table inet aula {}\ndelete table inet aula\n' +
      `table inet aula {\n${chain('input')}${chain('output')}}\n`;
    await this.exec(NFT, ['-f', '-'], { input: ruleset });
  }

  /**
   * A Chromium that runs inside this namespace (through `ip netns exec`), treating the
   * portal's origin as secure (camera, Secure cookies over plain HTTP). Closed with the
   * namespace.
   */
  async browser(portal) {
    if (!this.#wrapper) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), `aula-netns-${process.pid}-`));
      this.#wrapper = path.join(dir, 'chromium');
      fs.writeFileSync(this.#wrapper, `#!/bin/sh\nexec ${IP} netns exec ${this.name} ${CHROMIUM} "$@"\n`, {
        mode: 0o755,
      });
    }
    const browser = await launchBrowser({
      executablePath: this.#wrapper,
      args: secureOriginFlags(portal.origin),
    });
    this.browsers.push(browser);
    return browser;
  }

  async destroy() {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.all(this.browsers.map((b) => b.close().catch(() => {})));
    this.browsers = [];
    if (this.#made) {
      // Deleting the bridge side of a veth deletes both ends at once, whoever still holds the
      // namespace; then the namespace itself.
      await run(IP, ['link', 'del', this.hostLink]).catch(() => {});
      await run(IP, ['netns', 'del', this.name]).catch(() => {});
      this.#made = false;
    }
    this.#removeWrapper();
  }

  destroySync() {
    for (const t of this.#timers) clearTimeout(t);
    if (this.#made) {
      runSync(IP, ['link', 'del', this.hostLink]);
      runSync(IP, ['netns', 'del', this.name]);
      this.#made = false;
    }
    this.#removeWrapper();
  }

  #removeWrapper() {
    if (this.#wrapper) fs.rmSync(path.dirname(this.#wrapper), { recursive: true, force: true });
    this.#wrapper = null;
  }
}

const TURNSERVER = fs.existsSync('/usr/bin/turnserver') ? '/usr/bin/turnserver' : 'turnserver';

/**
 * Debian's coturn on the bridge's address (UDP and TCP on one port), with a random shared
 * secret (`use-auth-secret`, as in the fleet), relaying only to the bridge's address (where
 * the media node is), as the fleet's TURN beside each node relays only to its node. The
 * address is this run's own; the port is not 3478, where the package's own service may
 * listen on every address.
 */
export class Turn {
  static async start(network, options = {}) {
    let last;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        return await Turn.#start(network, 20_000 + Math.floor(Math.random() * 10_000), options);
      } catch (e) {
        last = e;
      }
    }
    throw last;
  }

  static async #start(network, port, { logPath } = {}) {
    if (!fs.existsSync(TURNSERVER) && !(await run('sh', ['-c', 'command -v turnserver']).catch(() => ''))) {
      throw new Error('turnserver (Debian\'s coturn) is missing: run tests/browser/install.sh');
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `aula-turn-${process.pid}-`));
    const secret = crypto.randomBytes(18).toString('base64url');
    const ip = network.gateway;
    const child = spawn(
      TURNSERVER,
      [
        '-n', // no configuration file: exactly these settings
        `--listening-ip=${ip}`,
        `--relay-ip=${ip}`,
        `--listening-port=${port}`,
        '--min-port=49152',
        '--max-port=65535',
        '--use-auth-secret',
        `--static-auth-secret=${secret}`,
        '--realm=aula.test',
        '--fingerprint',
        '--no-tls',
        '--no-dtls',
        '--no-cli',
        '--no-multicast-peers',
        `--allowed-peer-ip=${ip}`,
        '--denied-peer-ip=0.0.0.0-255.255.255.255',
        `--db=${path.join(dir, 'turndb')}`,
        `--pidfile=${path.join(dir, 'turnserver.pid')}`,
        '--log-file=stdout',
        '--simple-log',
      ],
      { stdio: ['ignore', logPath ? fs.openSync(logPath, 'w') : 'ignore', logPath ? fs.openSync(logPath, 'a') : 'ignore'] },
    );
    const turn = new Turn(child, dir, secret, ip, port);
    try {
      await turn.#listening();
      return turn;
    } catch (e) {
      await turn.stop();
      throw e;
    }
  }

  constructor(child, dir, secret, ip, port) {
    this.port = port;
    this.child = child;
    this.dir = dir;
    this.secret = secret;
    this.ip = ip;
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    this.#killOnExit = () => child.exitCode === null && child.kill('SIGKILL');
    process.on('exit', this.#killOnExit);
  }

  #killOnExit;

  /** TURN over UDP and over TCP, as `aula serve --turn-url` takes them. */
  get urls() {
    return [`turn:${this.ip}:${this.port}?transport=udp`, `turn:${this.ip}:${this.port}?transport=tcp`];
  }

  /** `aula serve` settings that hand these servers out with every join answer (the secret
   * in the environment, not on a command line that `ps` shows). */
  get portalOptions() {
    return { args: ['--turn-url', this.urls.join(',')], env: { AULA_TURN_SECRET: this.secret } };
  }

  async #listening() {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`turnserver exited (${this.child.exitCode}) before it listened`);
      const ok = await new Promise((resolve) => {
        const s = net.connect({ host: this.ip, port: this.port }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`turnserver did not listen on ${this.ip}:${this.port} within 10 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const done = await Promise.race([this.exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 3_000))]);
      if (!done) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    process.off('exit', this.#killOnExit);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * An `aulaSuite` whose portal and in-process media node listen on a test network's bridge,
 * with a namespace for each label in `namespaces`. Returns the suite, plus `net` (the
 * Network) and `turn` (with `turn: true`: a coturn on the bridge that the portal's join
 * answers name). `portal` adds to the portal's options (`args`, `env`).
 */
export function netnsSuite(name, { namespaces = [], turn: withTurn = false, portal = async () => ({}) } = {}) {
  let network = null;
  let turn = null;
  const suite = aulaSuite(name, {
    setup: async () => {
      network = await Network.create();
      for (const label of namespaces) await network.add(label);
      if (withTurn) {
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        turn = await Turn.start(network, { logPath: path.join(ARTIFACTS, `${name}.turnserver.log`) });
      }
      const extra = (await portal(network)) ?? {};
      return {
        ...extra,
        listen: `${network.gateway}:0`,
        args: ['--media-udp', `${network.gateway}:0`, ...(turn?.portalOptions.args ?? []), ...(extra.args ?? [])],
        env: { ...(turn?.portalOptions.env ?? {}), ...(extra.env ?? {}) },
      };
    },
    teardown: async () => {
      await turn?.stop();
      await network?.destroy();
    },
  });
  Object.defineProperty(suite, 'turn', { get: () => turn });
  return Object.defineProperty(suite, 'net', { get: () => network });
}

// `node tests/browser/netns.mjs --sweep`: removes what killed test runs left behind.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--sweep')) {
    const removed = sweepStale();
    console.log(removed.length ? `removed ${removed.join(', ')}` : 'nothing left behind');
  } else {
    console.error('usage: node tests/browser/netns.mjs --sweep');
    process.exit(2);
  }
}
