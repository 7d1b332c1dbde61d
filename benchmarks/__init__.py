"""`lstmserve bench`: load a running lstmserve with N streams and measure it against its floors."""
