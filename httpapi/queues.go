package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// MaxQueueParallelism is the largest parallelism a queue accepts.
const MaxQueueParallelism = 10_000

// routeQueues routes /v2/queues, /v2/queues/{name} and
// /v2/queues/{name}/pause|resume.
func (s *Server) routeQueues(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "" {
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:  s.handleQueueList,
			http.MethodPost: s.handleQueueUpsert,
		})
		return
	}

	segment, action, _ := strings.Cut(rest, "/")
	name, err := parseGroupName("queue", segment)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch action {
	case "":
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleQueueGet(w, r, name) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleQueueDelete(w, r, name) },
		})
	case "pause", "resume":
		paused := action == "pause"
		s.only(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) { s.handleQueuePause(w, r, name, paused) })
	default:
		s.notFound(w, r)
	}
}

// handleQueueList serves GET /v2/queues.
func (s *Server) handleQueueList(w http.ResponseWriter, r *http.Request) {
	queues, err := s.cfg.Store.QueueList(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]wire.Queue, len(queues))
	for i, q := range queues {
		out[i] = wire.NewQueue(q)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleQueueUpsert serves POST /v2/queues: it creates a queue or changes
// its parallelism or paused state, and responds with the queue.
func (s *Server) handleQueueUpsert(w http.ResponseWriter, r *http.Request) {
	var body struct {
		QueueName   *string         `json:"queueName"`
		Parallelism json.RawMessage `json:"parallelism"`
		Paused      json.RawMessage `json:"paused"`
	}
	ok, err := s.readJSONBody(w, r, &body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok || body.QueueName == nil {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID, `missing queueName: send {"queueName": "my-queue", "parallelism": 1}`))
		return
	}
	if !ferry.ValidGroupName(*body.QueueName) {
		s.writeError(w, r, invalidGroupName("queue", *body.QueueName))
		return
	}

	params := &store.QueueUpsertParams{Name: *body.QueueName, Now: s.cfg.Now()}
	if present(body.Parallelism) {
		var n int
		if json.Unmarshal(body.Parallelism, &n) != nil || n < 1 || n > MaxQueueParallelism {
			s.writeError(w, r, ferry.Errorf(ferry.EINVALID, "invalid parallelism %s: expected an integer from 1 to %d",
				truncate(string(body.Parallelism)), MaxQueueParallelism))
			return
		}
		params.Parallelism = &n
	}
	if present(body.Paused) {
		var paused bool
		if json.Unmarshal(body.Paused, &paused) != nil {
			s.writeError(w, r, ferry.Errorf(ferry.EINVALID, "invalid paused %s: expected true or false", truncate(string(body.Paused))))
			return
		}
		params.Paused = &paused
	}

	q, err := s.cfg.Store.QueueUpsert(r.Context(), params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// More parallelism or a resume may let waiting messages start.
	s.notify()
	writeJSON(w, http.StatusOK, wire.NewQueue(q))
}

// present reports whether a JSON field was sent with a value other than
// null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// handleQueueGet serves GET /v2/queues/{name}.
func (s *Server) handleQueueGet(w http.ResponseWriter, r *http.Request, name string) {
	q, err := s.cfg.Store.QueueGet(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, queueNotFound(name))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewQueue(q))
}

func queueNotFound(name string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "queue %s not found", truncate(name))
}

// handleQueueDelete serves DELETE /v2/queues/{name}. It cancels the
// queue's undelivered messages and responds 200 also when the queue did not
// exist.
func (s *Server) handleQueueDelete(w http.ResponseWriter, r *http.Request, name string) {
	existed, err := s.cfg.Store.QueueDelete(r.Context(), name, s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if existed {
		s.logger.Info("queue deleted", "queue", name)
	}
	w.WriteHeader(http.StatusOK)
}

// handleQueuePause serves POST /v2/queues/{name}/pause and .../resume.
// Pausing a paused queue, or resuming a running one, changes nothing.
func (s *Server) handleQueuePause(w http.ResponseWriter, r *http.Request, name string, paused bool) {
	err := s.cfg.Store.QueueSetPaused(r.Context(), name, paused, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, queueNotFound(name))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !paused {
		s.notify()
	}
	w.WriteHeader(http.StatusOK)
}
