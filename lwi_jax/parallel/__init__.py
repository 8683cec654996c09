"""Members as one compiled program: execution strategies over the member axis (ensemble),
the programs themselves (programs), and their split over devices and hosts (sharding)."""
