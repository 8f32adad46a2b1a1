package httpapi

import (
	"net/http"
	"strconv"

	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Page sizes of the events list.
const (
	eventsPageDefault = 100
	eventsPageMax     = 1000
)

// handleEvents serves GET /v2/events (key "events") and GET /v2/logs (key
// "logs").
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	count, err := parseCount(q, eventsPageDefault, eventsPageMax)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	newestFirst, err := parseOrder(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	params := &store.EventListParams{Filter: f, NewestFirst: newestFirst, Limit: count + 1}
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(c, 10, 64)
		if err != nil || id < 0 {
			s.writeError(w, r, invalidCursor(c))
			return
		}
		if newestFirst {
			params.BeforeID = id
		} else {
			params.AfterID = id
		}
	}

	events, err := s.cfg.Store.EventList(r.Context(), params)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cursor := ""
	if len(events) > count {
		events = events[:count]
		cursor = strconv.FormatInt(events[count-1].ID, 10)
	}
	list := make([]wire.Event, 0, len(events))
	for _, e := range events {
		list = append(list, wire.NewEvent(e))
	}

	if key == "logs" {
		writeJSON(w, http.StatusOK, wire.LogsResponse{Cursor: cursor, Logs: list})
		return
	}
	writeJSON(w, http.StatusOK, wire.EventsResponse{Cursor: cursor, Events: list})
}
