package httpapi

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// maxDLQPage is the default and largest page of dead-letter operations.
const maxDLQPage = 100

// dlqSelection reads the ids or filters that select dead-letter entries.
func dlqSelection(q url.Values) ([]string, *store.MessageFilter, error) {
	if ids := listValues(q, "dlqIds", "dlqId"); len(ids) > 0 {
		return ids, nil, nil
	}
	f, err := parseFilter(q)
	return nil, f, err
}

// handleDLQList serves GET /v2/dlq.
func (s *Server) handleDLQList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids, f, err := dlqSelection(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, maxDLQPage, maxDLQPage)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	newestFirst := false
	if q.Get("order") != "" {
		if newestFirst, err = parseOrder(q); err != nil {
			s.writeError(w, r, err)
			return
		}
	}

	// One extra entry shows whether another page follows.
	entries, err := s.cfg.Store.DLQList(r.Context(), &store.DLQListParams{
		IDs: ids, Filter: f, AfterID: q.Get("cursor"), Limit: count + 1, NewestFirst: newestFirst,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := wire.DLQListResponse{Messages: []wire.DLQMessage{}}
	if len(entries) > count {
		entries = entries[:count]
		resp.Cursor = entries[count-1].ID
	}
	for _, e := range entries {
		resp.Messages = append(resp.Messages, wire.NewDLQMessage(e))
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleDLQGet serves GET /v2/dlq/{id}.
func (s *Server) handleDLQGet(w http.ResponseWriter, r *http.Request, id string) {
	e, err := s.cfg.Store.DLQGet(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, dlqNotFound(id))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewDLQMessage(e))
}

func dlqNotFound(id string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "dlq entry %s not found; it was deleted, retried or expired", truncate(id))
}

// handleDLQDeleteOne serves DELETE /v2/dlq/{id}.
func (s *Server) handleDLQDeleteOne(w http.ResponseWriter, r *http.Request, id string) {
	n, err := s.cfg.Store.DLQDelete(r.Context(), &store.DLQDeleteParams{IDs: []string{id}})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if n == 0 {
		s.writeError(w, r, dlqNotFound(id))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// dlqDeleteBody is the JSON body form of a bulk delete.
type dlqDeleteBody struct {
	DLQIDs []string `json:"dlqIds"`
}

// handleDLQDelete serves DELETE /v2/dlq: ids in a JSON body, or ids or
// filters in the query, one page of count entries per call. With no ids
// and no filters it deletes everything, a page at a time.
func (s *Server) handleDLQDelete(w http.ResponseWriter, r *http.Request) {
	var body dlqDeleteBody
	ok, err := s.readJSONBody(w, r, &body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ok {
		n := 0
		if len(body.DLQIDs) > 0 {
			if n, err = s.cfg.Store.DLQDelete(r.Context(), &store.DLQDeleteParams{IDs: body.DLQIDs}); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, wire.DLQDeleteResponse{Deleted: n})
		return
	}

	q := r.URL.Query()
	ids, f, err := dlqSelection(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, maxDLQPage, maxDLQPage)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.cfg.Store.DLQDelete(r.Context(), &store.DLQDeleteParams{IDs: ids, Filter: f, Limit: count})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := wire.DLQDeleteResponse{Deleted: n}
	if len(ids) == 0 && n == count && s.dlqHasMore(r, f) {
		resp.Cursor = "more"
	}
	writeJSON(w, http.StatusOK, resp)
}

// dlqHasMore reports whether entries matching f remain.
func (s *Server) dlqHasMore(r *http.Request, f *store.MessageFilter) bool {
	rest, err := s.cfg.Store.DLQList(r.Context(), &store.DLQListParams{Filter: f, Limit: 1})
	return err == nil && len(rest) > 0
}

// handleDLQRetryOne serves POST /v2/dlq/retry/{id}.
func (s *Server) handleDLQRetryOne(w http.ResponseWriter, r *http.Request, id string) {
	m, err := s.retryDLQ(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.notify()
	writeJSON(w, http.StatusCreated, wire.PublishResponse{MessageID: m.ID})
}

// handleDLQRetry serves POST /v2/dlq/retry: one page of the entries that
// the ids or filters select becomes new messages.
func (s *Server) handleDLQRetry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids, f, err := dlqSelection(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, maxDLQPage, maxDLQPage)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	entries, err := s.cfg.Store.DLQList(r.Context(), &store.DLQListParams{IDs: ids, Filter: f, Limit: count + 1})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := wire.DLQRetryResponse{Responses: []wire.PublishResponse{}}
	if len(entries) > count {
		entries = entries[:count]
		resp.Cursor = "more"
	}
	for _, e := range entries {
		m, err := s.retryDLQ(r, e.ID)
		if ferry.ErrorCode(err) == ferry.ENOTFOUND {
			// Another request retried or deleted it meanwhile.
			continue
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		resp.Responses = append(resp.Responses, wire.PublishResponse{MessageID: m.ID})
	}
	if len(resp.Responses) > 0 {
		s.notify()
	}
	writeJSON(w, http.StatusCreated, resp)
}

// retryDLQ turns one dead-letter entry into a new message. Upstash-*
// headers of the request override the failed message's settings.
func (s *Server) retryDLQ(r *http.Request, id string) (*ferry.Message, error) {
	now := s.cfg.Now()
	m, err := s.cfg.Store.DLQRetry(r.Context(), &store.DLQRetryParams{
		DLQID: id,
		Now:   now,
		Build: func(failed *ferry.Message) (*ferry.Message, error) {
			m := *failed
			m.ID = ferry.NewMessageID()
			m.State = ferry.MessageStateCreated
			m.Retried, m.Attempts = 0, 0
			m.NotBefore, m.CreatedAt, m.DueAt = now, now, now
			m.LeaseOwner = ""
			m.DeduplicationID = ""
			if err := publish.Apply(&m, publish.Source{Header: r.Header}, now); err != nil {
				return nil, err
			}
			if err := publish.ApplyCallbacks(&m, r.Header, now); err != nil {
				return nil, err
			}
			return &m, nil
		},
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, dlqNotFound(id)
	}
	return m, err
}
