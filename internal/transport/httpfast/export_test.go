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
