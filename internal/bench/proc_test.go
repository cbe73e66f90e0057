package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 14 (utime) and 15 (stime) are 250 and 50 ticks; the command
	// name contains a space and a parenthesis.
	line := "1234 (herald (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Errorf("parseStatCPU = %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1 2")); err == nil {
		t.Error("short line accepted")
	}
}

func TestParseStatusRSS(t *testing.T) {
	in := "Name:\therald\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n"
	got, err := parseStatusRSS(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(12345 * 1024); got != want {
		t.Errorf("parseStatusRSS = %d, want %d", got, want)
	}
	if _, err := parseStatusRSS(strings.NewReader("Name:\tkthreadd\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := ProcessCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	rss, err := ProcessRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 {
		t.Errorf("own rss %d bytes, implausibly small", rss)
	}
}

func TestParseMetric(t *testing.T) {
	in := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes_total 1
process_resident_memory_bytes 2.4576e+07
`
	got, err := parseMetric(strings.NewReader(in), "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	if got != 24576000 {
		t.Errorf("parseMetric = %v, want 24576000", got)
	}
}
