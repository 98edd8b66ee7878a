// How a socket to a server does TLS: the CA, client certificate, server name and verification the settings
// ask for. Both sockets to a server (node-redis's and the pipeline's) take the same options from here.
import { isIP } from 'node:net';
import type { Endpoint } from '../settings.js';

/** Options for tls.connect (node-redis passes its socket options on to it). */
export function tlsOptions(endpoint: Endpoint, tls: NonNullable<Endpoint['tls']>) {
  return {
    host: endpoint.host,
    port: endpoint.port,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    servername: tls.servername ?? (isIP(endpoint.host) ? undefined : endpoint.host),
    rejectUnauthorized: tls.verify !== 'none',
    // 'ca': the chain must lead to a trusted CA, but any host name is accepted.
    ...(tls.verify === 'full' ? {} : { checkServerIdentity: () => undefined }),
  };
}
