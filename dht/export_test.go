package dht

import adht "github.com/anacrolix/dht/v2"

var QueryRateLimitingZero = adht.QueryRateLimiting{}
