// A plugin that allows every publish: measures the cost of the
// authorizePublish round trip itself (batching, FFI, cache).
export default { name: 'allow-all', authorizePublish: () => true }
