// A js-libp2p peer, configured only through js-libp2p's public options, that dials a Chorus
// node and waits for one message on a gossip topic. Usage: node peer.mjs MULTIADDR TOPIC
// js-libp2p 3 uses Promise.withResolvers (Node 22); the machine's Node is 20.
Promise.withResolvers ??= function () {
  let resolve, reject
  const promise = new Promise((yes, no) => { resolve = yes; reject = no })
  return { promise, resolve, reject }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { gossipsub } = await import('@libp2p/gossipsub')
const { identify } = await import('@libp2p/identify')
const { multiaddr } = await import('@multiformats/multiaddr')

const [address, topic] = process.argv.slice(2)
const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    // Chorus gossips unsigned messages, identified by their content.
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictNoSign' }),
  },
})
const timeout = setTimeout(() => {
  console.error(`no message on ${topic} within 60 s`)
  process.exit(1)
}, 60_000)
node.services.pubsub.addEventListener('message', (event) => {
  if (event.detail.topic !== topic) return
  console.log(`received ${event.detail.data.length} bytes on ${topic}`)
  clearTimeout(timeout)
  node.stop().finally(() => process.exit(0))
})
node.services.pubsub.subscribe(topic)
await node.dial(multiaddr(address))
console.log(`dialed ${address}`)
