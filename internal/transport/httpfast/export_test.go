package httpfast

// BytesRead returns the bytes the fast-path connections have read.
func (s *Server) BytesRead() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for c := range s.conns {
		n += c.nread.Load()
	}
	return n
}

// Handoffs returns how many connections were handed to net/http.
func (s *Server) Handoffs() int64 { return s.handoffs.Load() }
