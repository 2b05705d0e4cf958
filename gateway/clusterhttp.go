package gateway

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// forwardedHeader marks a request one node of a cluster forwarded to
// another; such a request is never forwarded again.
const forwardedHeader = "Segue-Forwarded-By"

// forwardToHolder passes a request about conversation id to the node
// that holds it, at its cluster.advertise.http, when this node does not:
// a file upload must be stored and announced by the node of the
// conversation's live state. It reports whether it answered the request.
// The holder authenticates the request as it would its own.
func (s *Server) forwardToHolder(w http.ResponseWriter, r *http.Request, id string) bool {
	if s.node == nil || r.Header.Get(forwardedHeader) != "" || s.hub.holds(id) {
		return false
	}
	_, adv, ok := s.node.holderAddrs(r.Context(), id)
	if !ok || adv == "" {
		return false
	}
	target, err := url.Parse(adv)
	if err != nil {
		return false
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the holder checks Origin against its public URL
			pr.SetXForwarded()
			pr.Out.Header.Set(forwardedHeader, s.node.id)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("request not forwarded to the conversation's node", "conv", id, "err", err)
			writeError(w, errf(http.StatusBadGateway, "unavailable", "the server holding this conversation did not answer; try again"))
		},
	}
	s.log.Debug("request forwarded to the conversation's node", "conv", id, "to", adv)
	p.ServeHTTP(w, r)
	return true
}
