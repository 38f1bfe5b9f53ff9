package chart

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

// serviceProxy stands in for kube-proxy, which a local control plane does
// not run: the API server opens its connections to Services (the chart's
// webhooks, by clientConfig.service) through it, as HTTP CONNECT requests on
// a Unix socket (an egress selector for the "cluster" network, see
// egressConfig). It connects a Service's cluster IP and port to the local
// address a test routed there, as kube-proxy connects them to a pod's
// target port, and answers 502 to every other destination, so that a
// webhook nobody serves fails as it does on a cluster.
type serviceProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	routes map[string]string
}

// egressConfig is the API server's EgressSelectorConfiguration: its
// connections to the cluster network (webhooks, aggregated APIs, the proxy
// subresources) go through the HTTP CONNECT proxy on the Unix socket %s.
const egressConfig = `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`

// startServiceProxy listens on the Unix socket and serves until close.
func startServiceProxy(socket string) (*serviceProxy, error) {
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", socket, err)
	}
	p := &serviceProxy{ln: ln, routes: map[string]string{}}
	go p.serve()
	return p, nil
}

// route sends the connections to from (a Service's clusterIP:port) to to.
func (p *serviceProxy) route(from, to string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[from] = to
}

func (p *serviceProxy) close() {
	_ = p.ln.Close()
	_ = os.Remove(p.ln.Addr().String())
}

func (p *serviceProxy) serve() {
	for {
		conn, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		go p.handle(conn)
	}
}

// handle answers one CONNECT request and then copies bytes both ways until
// either side closes.
func (p *serviceProxy) handle(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(conn, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	to, ok := p.routes[req.Host]
	p.mu.Unlock()
	if !ok {
		_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	upstream, err := net.Dial("tcp", to)
	if err != nil {
		_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer func() { _ = upstream.Close() }()
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(upstream, br) // br holds anything read past the request
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(conn, upstream)
		done <- struct{}{}
	}()
	<-done
}
