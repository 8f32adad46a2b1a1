// Package ferry holds the domain types of Ferry, a self-hosted server for
// asynchronous work over HTTP that speaks the Upstash QStash v2 API.
//
// The root package defines messages, their states, delivery events,
// dead-letter entries and the application error type. Implementations live
// in subpackages named for what they depend on: store/sqlite and
// store/postgres persist, dispatch delivers, httpapi serves the API, and
// cmd/ferry wires them together.
package ferry
