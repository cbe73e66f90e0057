package group

import (
	"encoding/json"
	"time"
)

// jsonInfo is Info as the API writes it: the settings' fields, then the
// state's.
type jsonInfo struct {
	Created       time.Time      `json:"created"`
	Pending       uint64         `json:"pending"`
	InFlight      int            `json:"in_flight"`
	Waiting       int            `json:"waiting"`
	Members       map[string]int `json:"members"`
	Redelivered   uint64         `json:"redelivered"`
	DeadLettered  uint64         `json:"dead_lettered"`
	EpochResets   uint64         `json:"epoch_resets"`
	Trimmed       uint64         `json:"trimmed"`
	Positions     []jsonPosition `json:"positions"`
	TopicsLeftOut int            `json:"topics_left_out,omitempty"`
}

type jsonPosition struct {
	Topic     string `json:"topic"`
	Epoch     string `json:"epoch"`
	Committed uint64 `json:"committed"`
	Head      uint64 `json:"head"`
	Pending   uint64 `json:"pending"`
}

// MarshalJSON encodes the group's settings (Config.MarshalJSON) with its
// state's fields beside them (docs/api.md, "Consumer groups").
func (in Info) MarshalJSON() ([]byte, error) {
	cfg, err := in.Config.MarshalJSON()
	if err != nil {
		return nil, err
	}
	j := jsonInfo{
		Created: in.Created.UTC(), Pending: in.Pending, InFlight: in.InFlight, Waiting: in.Waiting, Members: in.Members,
		Redelivered: in.Redelivered, DeadLettered: in.DeadLettered, EpochResets: in.EpochResets, Trimmed: in.Trimmed,
		Positions: []jsonPosition{}, TopicsLeftOut: in.TopicsLeftOut,
	}
	if j.Members == nil {
		j.Members = map[string]int{}
	}
	for _, t := range in.Topics {
		j.Positions = append(j.Positions, jsonPosition{Topic: t.Topic, Epoch: t.Epoch.String(), Committed: t.Committed, Head: t.Head, Pending: t.Pending})
	}
	st, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	out := append(cfg[:len(cfg)-1:len(cfg)-1], ',')
	return append(out, st[1:]...), nil
}
