// Throwaway TLS material and TLS-only redis-server processes for the TLS tests. The certificates are made
// with the real `openssl` command; the servers are the real redis-server with its TLS port only. Nothing is mocked.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, RESP_TYPES } from '@redis/client';
import { decode, freePort, NO_SNAPSHOT_DELAY, stopProcess, waitForReady, type RedisServer } from './servers.js';

/** Paths of PEM files in one temporary directory. */
export interface Certificates {
  dir: string;
  /** The CA that signed the server and client certificates. */
  ca: string;
  /** A server certificate: CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1. */
  serverCert: string;
  serverKey: string;
  /** A client certificate for mutual TLS, signed by the same CA. */
  clientCert: string;
  clientKey: string;
  /** A second CA that signed nothing the servers present. */
  otherCa: string;
  remove(): void;
}

/** A config of our own, so the system's openssl.cnf cannot change what the certificates hold. */
const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no

[dn]
CN = placeholder

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/** P-256 keys: made in milliseconds, and every TLS library here speaks them. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(dir: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error('the TLS tests need the openssl command (apt-get install openssl)');
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? String(err)}`);
  }
}

/** Makes a CA, a server and a client certificate signed by it, and an unrelated second CA. */
export function makeCertificates(): Certificates {
  const dir = mkdtempSync(join(tmpdir(), 'rkm-tls-'));
  const path = (name: string): string => join(dir, name);
  try {
    writeFileSync(path('openssl.cnf'), OPENSSL_CONFIG);
    const config = ['-config', path('openssl.cnf')];
    const makeCa = (name: string, cn: string): void =>
      openssl(dir, ['req', '-x509', ...NEW_KEY, ...config, '-extensions', 'ca_ext', '-days', '3', '-subj', `/CN=${cn}`,
        '-keyout', path(`${name}.key`), '-out', path(`${name}.crt`)]);
    const makeSigned = (name: string, cn: string, extensions: string, serial: string): void => {
      openssl(dir, ['req', '-new', ...NEW_KEY, ...config, '-subj', `/CN=${cn}`, '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`)]);
      openssl(dir, ['x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.crt'), '-CAkey', path('ca.key'), '-set_serial', serial,
        '-days', '2', '-extfile', path('openssl.cnf'), '-extensions', extensions, '-out', path(`${name}.crt`)]);
    };
    makeCa('ca', 'rkm test CA');
    makeCa('other-ca', 'rkm unrelated CA');
    makeSigned('server', 'localhost', 'server_ext', '1001');
    makeSigned('client', 'rkm test client', 'client_ext', '1002');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    ca: path('ca.crt'),
    serverCert: path('server.crt'),
    serverKey: path('server.key'),
    clientCert: path('client.crt'),
    clientKey: path('client.key'),
    otherCa: path('other-ca.crt'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Our own client to a TLS-only server: trusts the test CA, presents the client certificate when asked. */
function makeTlsClient(port: number, certs: Certificates) {
  return createClient({
    RESP: 2,
    socket: {
      host: '127.0.0.1',
      port,
      tls: true,
      ca: readFileSync(certs.ca),
      cert: readFileSync(certs.clientCert),
      key: readFileSync(certs.clientKey),
      servername: 'localhost',
      reconnectStrategy: false,
    },
  }).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}

export interface TlsServerOptions {
  /** --tls-auth-clients yes: only clients with a certificate from the test CA get in. */
  authClients?: boolean;
  extraArgs?: string[];
}

/**
 * A redis-server that listens on a TLS port only (--port 0), on 127.0.0.1, with no persistence and DEBUG allowed
 * from loopback; `port` is its TLS port. The returned `client` and `cmd` speak TLS (with the client certificate), so
 * seedEveryType and digest work on it as on a plain server.
 */
export async function startTlsRedis(certs: Certificates, options: TlsServerOptions = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'rkm-redis-tls-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
        '--enable-debug-command', 'local', ...NO_SNAPSHOT_DELAY,
        '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey, '--tls-ca-cert-file', certs.ca,
        '--tls-auth-clients', options.authClients ? 'yes' : 'no', ...(options.extraArgs ?? [])],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const ready = await waitForReady(child);
    if (!ready.ok) {
      if (attempt < 3 && /Address already in use/.test(ready.output)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server with TLS did not start: ${ready.output}`);
    }
    const client = makeTlsClient(port, certs);
    client.on('error', () => undefined); // a test that breaks a connection must not crash the worker
    try {
      await client.connect();
    } catch (err) {
      await stopProcess(child);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return {
      port,
      dir,
      client,
      cmd: async (...args) => {
        const reply = await client.sendCommand(args.map((a) => (typeof a === 'number' ? String(a) : a)));
        return decode(reply);
      },
      stop: async () => {
        await client.close().catch(() => client.destroy());
        await stopProcess(child);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
