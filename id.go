package ferry

import "github.com/oklog/ulid/v2"

// NewMessageID returns a new message id: "msg_" and a ULID, so ids sort by
// creation time.
func NewMessageID() string {
	return "msg_" + ulid.Make().String()
}

// NewDLQID returns a new dead-letter id, sortable by creation time.
func NewDLQID() string {
	return "dlq_" + ulid.Make().String()
}
