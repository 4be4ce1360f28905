"""MovieLens 100K (``u.data``, ``u.item``, ``u.user``) as one ``movies`` scenario.

Every rating is an event of type ``rating`` whose value is the number of stars; title, year
and genres make the item's text. Ids are prefixed (``u1``, ``m1``) so they never collide with
other datasets' ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hybridrec import columns as C
from hybridrec.data.tables import Dataset

SCENARIO = "movies"
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
REQUIRED = ("u.data", "u.item", "u.user")


def load(path: Path) -> Dataset:
    path = Path(path)
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a MovieLens 100K directory: missing {', '.join(missing)}")
    ratings = pd.read_csv(path / "u.data", sep="\t", header=None,
                          names=["user", "item", "rating", "ts"])
    movies = pd.read_csv(path / "u.item", sep="|", header=None, encoding="latin-1",
                         names=["item", "title", "release", "video", "url", *GENRES])
    people = pd.read_csv(path / "u.user", sep="|", header=None,
                         names=["user", "age", "gender", "occupation", "zip"])

    ts = pd.to_datetime(ratings["ts"], unit="s", utc=True)
    profile_time = ts.min() - pd.Timedelta(days=1)
    events = pd.DataFrame({
        C.USER_ID: "u" + ratings["user"].astype(str),
        C.ITEM_ID: "m" + ratings["item"].astype(str),
        C.SCENARIO: SCENARIO,
        C.EVENT_TYPE: "rating",
        C.VALUE: ratings["rating"].astype(float),
        C.EVENT_TIMESTAMP: ts,
    })
    genre_flags = movies[list(GENRES)].to_numpy(bool)
    genre_names = [", ".join(g for g, on in zip(GENRES, row, strict=True) if on)
                   for row in genre_flags]
    first_genre = [names.split(", ")[0] if names else "unknown" for names in genre_names]
    year = pd.to_datetime(movies["release"], format="%d-%b-%Y", errors="coerce").dt.year
    title = movies["title"].fillna("").astype(str)
    text = [f"{t}. Released {int(y) if y == y else 'unknown'}. Genres: {g}."
            for t, y, g in zip(title, year, genre_names, strict=True)]
    items = pd.DataFrame({
        C.ITEM_ID: "m" + movies["item"].astype(str),
        C.SCENARIO: SCENARIO,
        "category": first_genre,
        "title": title,
        "text": text,
        "price": pd.Series(float("nan"), index=movies.index, dtype="float32"),
        C.EVENT_TIMESTAMP: profile_time,
    })
    users = pd.DataFrame({
        C.USER_ID: "u" + people["user"].astype(str),
        "age": people["age"].astype("int64"),
        "gender": people["gender"].astype(str),
        "occupation": people["occupation"].astype(str),
        C.EVENT_TIMESTAMP: profile_time,
    })
    return Dataset(events=events, users=users, items=items)
