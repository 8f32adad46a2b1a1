package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// flowControlActions are the POST routes under /v2/flowControl/{key}/.
var flowControlActions = map[string]bool{"pause": true, "resume": true, "pin": true, "unpin": true, "resetrate": true}

// routeFlowControl routes /v2/flowControl, /v2/flowControl/{key} and
// /v2/flowControl/{key}/{action}. A key may contain "/", so a GET takes
// the whole rest as the key, and a POST takes the last segment as the
// action.
func (s *Server) routeFlowControl(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "" {
		s.only(w, r, http.MethodGet, s.handleFlowControlList)
		return
	}
	if r.Method == http.MethodPost {
		segment, action, ok := cutLast(rest, "/")
		if !ok || !flowControlActions[strings.ToLower(action)] {
			s.notFound(w, r)
			return
		}
		key, err := parseFlowKey(segment)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.handleFlowControlUpdate(w, r, key, strings.ToLower(action))
		return
	}

	key, err := parseFlowKey(rest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.handleFlowControlGet(w, r, key) })
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func parseFlowKey(segment string) (string, error) {
	key, err := url.PathUnescape(segment)
	if err != nil {
		return "", ferry.Errorf(ferry.EINVALID, "invalid flow-control key %q in the path: bad percent-encoding", truncate(segment))
	}
	if err := publish.ValidateFlowControlKey(key); err != nil {
		return "", ferry.Errorf(ferry.EINVALID, "invalid flow-control key %q in the path", truncate(key))
	}
	return key, nil
}

func flowKeyNotFound(key string) error {
	return ferry.Errorf(ferry.ENOTFOUND, "flow-control key %s not found; a key exists once a message used it", truncate(key))
}

// handleFlowControlList serves GET /v2/flowControl; the search parameter
// keeps the keys that contain it.
func (s *Server) handleFlowControlList(w http.ResponseWriter, r *http.Request) {
	list, err := s.cfg.Store.FlowControlList(r.Context(), r.URL.Query().Get("search"), s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]wire.FlowControl, len(list))
	for i, f := range list {
		out[i] = wire.NewFlowControl(f)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleFlowControlGet serves GET /v2/flowControl/{key}.
func (s *Server) handleFlowControlGet(w http.ResponseWriter, r *http.Request, key string) {
	f, err := s.cfg.Store.FlowControlGet(r.Context(), key, s.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, flowKeyNotFound(key))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewFlowControl(f))
}

// handleFlowControlUpdate serves POST /v2/flowControl/{key}/pause, resume,
// pin, unpin and resetRate.
func (s *Server) handleFlowControlUpdate(w http.ResponseWriter, r *http.Request, key, action string) {
	params := &store.FlowControlUpdateParams{Key: key, Now: s.cfg.Now()}
	q := r.URL.Query()
	var err error
	switch action {
	case "pause", "resume":
		paused := action == "pause"
		params.Paused = &paused
	case "resetrate":
		params.ResetRate = true
	case "pin":
		err = parsePin(q, params)
	case "unpin":
		err = parseUnpin(q, params)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}

	err = s.cfg.Store.FlowControlUpdate(r.Context(), params)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, flowKeyNotFound(key))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.notify()
	w.WriteHeader(http.StatusOK)
}

// parsePin reads the parallelism, rate and period (seconds) to pin.
func parsePin(q url.Values, params *store.FlowControlUpdateParams) error {
	var err error
	if params.PinParallelism, err = intParam(q, "parallelism", publish.MaxFlowControlParallelism); err != nil {
		return err
	}
	if params.PinRate, err = intParam(q, "rate", publish.MaxFlowControlRate); err != nil {
		return err
	}
	seconds, err := intParam(q, "period", int(publish.MaxFlowControlPeriod/time.Second))
	if err != nil {
		return err
	}
	if seconds != nil {
		period := time.Duration(*seconds) * time.Second
		params.PinPeriod = &period
	}
	if params.PinParallelism == nil && params.PinRate == nil && params.PinPeriod == nil {
		return ferry.Errorf(ferry.EINVALID, "nothing to pin: set the parallelism, rate or period (seconds) query parameter")
	}
	return nil
}

// parseUnpin reads which settings to unpin; without parameters it unpins
// both.
func parseUnpin(q url.Values, params *store.FlowControlUpdateParams) error {
	for _, name := range []string{"parallelism", "rate"} {
		v := strings.TrimSpace(q.Get(name))
		if v == "" {
			continue
		}
		b, err := publish.ParseBool(v)
		if err != nil {
			return ferry.Errorf(ferry.EINVALID, "invalid %s parameter %q: expected true or false", name, truncate(v))
		}
		if name == "parallelism" {
			params.UnpinParallelism = b
		} else {
			params.UnpinRate = b
		}
	}
	if q.Get("parallelism") == "" && q.Get("rate") == "" {
		params.UnpinParallelism, params.UnpinRate = true, true
	}
	return nil
}

// intParam reads an optional integer parameter from 1 to max.
func intParam(q url.Values, name string, max int) (*int, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return nil, ferry.Errorf(ferry.EINVALID, "invalid %s parameter %q: expected an integer from 1 to %d", name, truncate(v), max)
	}
	return &n, nil
}

// handleGlobalParallelism serves GET /v2/globalParallelism: the
// dispatcher's concurrency of this node and the attempts in flight on all
// nodes.
func (s *Server) handleGlobalParallelism(w http.ResponseWriter, r *http.Request) {
	n, err := s.cfg.Store.MessageInFlight(r.Context(), s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.GlobalParallelism{ParallelismMax: s.cfg.MaxInFlight, ParallelismCount: n})
}
