"""``python -m cm3leon.core.train CONFIG [key=value ...]`` -- also the ``composer -n N -m`` target."""

from cm3leon.core.train.cli import main

if __name__ == "__main__":
    main()
