"""webmill: turn raw web crawls (WARC/WET/ARC) into token shards and a trained GPT."""

__version__ = "0.1.0"
