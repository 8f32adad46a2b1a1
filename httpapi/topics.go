package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/publish"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/wire"
)

// Limits of URL group endpoints.
const (
	// MaxEndpointName is the longest endpoint name accepted.
	MaxEndpointName = 256

	// MaxGroupEndpoints is the largest number of endpoints in one request.
	MaxGroupEndpoints = 1000
)

// routeTopics routes /v2/topics, /v2/topics/{name} and
// /v2/topics/{name}/endpoints. QStash's API calls URL groups topics.
func (s *Server) routeTopics(w http.ResponseWriter, r *http.Request, rest string) {
	if rest == "" {
		s.only(w, r, http.MethodGet, s.handleTopicList)
		return
	}

	segment, sub, _ := strings.Cut(rest, "/")
	name, err := parseGroupName("URL group", segment)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch sub {
	case "":
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodGet:    func(w http.ResponseWriter, r *http.Request) { s.handleTopicGet(w, r, name) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleTopicDelete(w, r, name) },
		})
	case "endpoints":
		s.methods(w, r, map[string]http.HandlerFunc{
			http.MethodPost:   func(w http.ResponseWriter, r *http.Request) { s.handleEndpoints(w, r, name, true) },
			http.MethodDelete: func(w http.ResponseWriter, r *http.Request) { s.handleEndpoints(w, r, name, false) },
		})
	default:
		s.notFound(w, r)
	}
}

// handleTopicList serves GET /v2/topics: every URL group by name, each
// with its endpoints in the order they were added.
func (s *Server) handleTopicList(w http.ResponseWriter, r *http.Request) {
	groups, err := s.cfg.Store.URLGroupList(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]wire.URLGroup, len(groups))
	for i, g := range groups {
		out[i] = wire.NewURLGroup(g)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleTopicGet serves GET /v2/topics/{name}.
func (s *Server) handleTopicGet(w http.ResponseWriter, r *http.Request, name string) {
	g, err := s.cfg.Store.URLGroupGet(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, topicNotFound(name))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.NewURLGroup(g))
}

// handleTopicDelete serves DELETE /v2/topics/{name}; a missing group also
// gets 200.
func (s *Server) handleTopicDelete(w http.ResponseWriter, r *http.Request, name string) {
	if _, err := s.cfg.Store.URLGroupDelete(r.Context(), name); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleEndpoints serves POST /v2/topics/{name}/endpoints (add is true),
// which creates the group or adds and updates endpoints, and DELETE, which
// removes endpoints by URL or name and deletes the group with its last
// endpoint.
func (s *Server) handleEndpoints(w http.ResponseWriter, r *http.Request, name string, add bool) {
	var body wire.EndpointsRequest
	ok, err := s.readJSONBody(w, r, &body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !ok || len(body.Endpoints) == 0 {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID, `missing endpoints: send {"endpoints": [{"url": "https://your.app/path"}]}`))
		return
	}
	if len(body.Endpoints) > MaxGroupEndpoints {
		s.writeError(w, r, ferry.Errorf(ferry.EINVALID, "too many endpoints: %d in one request, at most %d",
			len(body.Endpoints), MaxGroupEndpoints))
		return
	}

	endpoints := make([]ferry.Endpoint, len(body.Endpoints))
	for i, e := range body.Endpoints {
		if err := validateEndpoint(e, add); err != nil {
			s.writeError(w, r, err)
			return
		}
		endpoints[i] = ferry.Endpoint{Name: e.Name, URL: e.URL}
	}

	params := &store.URLGroupEndpointsParams{Name: name, Endpoints: endpoints, Now: s.cfg.Now()}
	if add {
		err = s.cfg.Store.URLGroupAddEndpoints(r.Context(), params)
	} else {
		err = s.cfg.Store.URLGroupRemoveEndpoints(r.Context(), params)
	}
	if errors.Is(err, store.ErrNotFound) {
		err = topicNotFound(name)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// validateEndpoint checks an endpoint of a request: one to add needs a
// URL, one to remove a URL or a name.
func validateEndpoint(e wire.Endpoint, add bool) error {
	if e.Name != "" && (len(e.Name) > MaxEndpointName || strings.IndexFunc(e.Name, unicode.IsControl) >= 0) {
		return ferry.Errorf(ferry.EINVALID, "invalid endpoint name %q: use at most %d characters without control characters",
			truncate(e.Name), MaxEndpointName)
	}
	switch {
	case e.URL != "":
		if publish.ValidateURL("endpoint url", e.URL) != nil {
			return ferry.Errorf(ferry.EINVALID, "invalid endpoint url %q: expected an http:// or https:// URL with a host",
				truncate(e.URL))
		}
		return nil
	case add:
		return ferry.Errorf(ferry.EINVALID, `missing url of an endpoint: each endpoint needs {"url": "https://your.app/path"}`)
	case e.Name == "":
		return ferry.Errorf(ferry.EINVALID, `missing url and name of an endpoint: name the endpoint to remove by "url" or "name"`)
	}
	return nil
}
