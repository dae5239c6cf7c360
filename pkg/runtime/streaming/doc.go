// Package streaming is the runtime's streaming server: it serves
// `kubectl exec`, `attach` and `port-forward` once the kubelet has asked the
// runtime (CRI Exec, Attach, PortForward) for a URL and proxied the client's
// upgraded connection to it.
//
// A CRI call stores the request under a random single-use token and returns
// a URL naming that token; the client then speaks one of the transports
// kubectl knows:
//
//   - remote commands (exec, attach) over SPDY (X-Stream-Protocol-Version
//     v4.channel.k8s.io … channel.k8s.io), one SPDY stream per stdio,
//     error and resize channel, or over WebSocket (v5.channel.k8s.io,
//     v4.channel.k8s.io and older, binary or base64), one leading byte per
//     message naming the channel;
//   - port-forward over SPDY (portforward.k8s.io, an error and a data stream
//     per forwarded connection), SPDY tunnelled in WebSocket binary messages
//     (SPDY/3.1+portforward.k8s.io, what kubectl 1.30 and later try first),
//     or plain WebSocket (v4.channel.k8s.io, a data and an error channel per
//     port, one connection per socket).
//
// The runtime supplies the primitives (Runtime); the server owns protocols,
// tokens and timeouts.
package streaming
