package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// handleMessageGet serves GET /v2/messages/{id}.
func (s *Server) handleMessageGet(w http.ResponseWriter, r *http.Request, id string) {
	m, err := s.cfg.Store.MessageGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, ferry.Errorf(ferry.ENOTFOUND, "message %s not found; delivered and failed messages stay readable for the message retention only", truncate(id)))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewMessage(m))
}

// handleMessageCancel serves DELETE /v2/messages/{id}.
func (s *Server) handleMessageCancel(w http.ResponseWriter, r *http.Request, id string) {
	n, err := s.cfg.Store.MessageCancel(r.Context(), &store.MessageCancelParams{IDs: []string{id}, Now: s.cfg.Now()})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n == 0 {
		s.writeError(w, r, ferry.Errorf(ferry.ENOTFOUND, "message %s not found or already finished", truncate(id)))
		return
	}
	writeJSON(w, http.StatusOK, wire.CancelResponse{Cancelled: n})
}

// cancelBody is the JSON body form of a bulk cancel, sent by the Go and
// Python SDKs.
type cancelBody struct {
	MessageIDs []string `json:"messageIds"`
}

// handleMessagesCancel serves DELETE /v2/messages: by ids or filters in
// the query, by ids in a JSON body, or, with neither, every waiting
// message.
func (s *Server) handleMessagesCancel(w http.ResponseWriter, r *http.Request) {
	params := &store.MessageCancelParams{Now: s.cfg.Now()}

	var body cancelBody
	ok, err := s.readJSONBody(w, r, &body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ok {
		params.IDs = body.MessageIDs
		if len(params.IDs) == 0 && body.MessageIDs != nil {
			writeJSON(w, http.StatusOK, wire.CancelResponse{})
			return
		}
	} else {
		q := r.URL.Query()
		if params.IDs = listValues(q, "messageIds"); len(params.IDs) == 0 {
			if params.Filter, err = parseFilter(q); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		// The count parameter is ignored, as on QStash: a filter cancel
		// takes every match in one call. The TypeScript SDK still sends
		// count=100 with cancel({all: true}).
	}

	n, err := s.cfg.Store.MessageCancel(r.Context(), params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.CancelResponse{Cancelled: n})
}

// readJSONBody decodes a JSON request body into v. It returns false when
// the body is empty.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request, v any) (bool, error) {
	data, err := s.readBody(w, r)
	if err != nil {
		return false, err
	}
	if len(data) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, ferry.Errorf(ferry.EINVALID, "invalid JSON body: %s", truncate(err.Error()))
	}
	return true, nil
}

// pathID returns the unescaped id in a path segment.
func pathID(segment string) (string, error) {
	id, err := url.PathUnescape(segment)
	if err != nil || id == "" {
		return "", ferry.Errorf(ferry.EINVALID, "invalid id %q in the path", truncate(segment))
	}
	return id, nil
}
