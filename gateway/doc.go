// Package gateway is the product's core: conversations, routing to agents,
// escalation state, the HTTP and WebSocket API, and the wiring of media legs.
// It is the only package that knows all the others.
package gateway
