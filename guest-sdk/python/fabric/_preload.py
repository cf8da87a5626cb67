"""Standard-library modules every Python component carries.

A component holds the modules imported while it was built (componentize-py
runs the application's imports once and snapshots the interpreter); at run
time a sandbox has no files to import others from. So a module imported
only inside a function must already be here or imported at the top of the
application. These are the pure-Python modules programs use most, loaded
once at build time: they cost no time when an instance starts.
"""

import base64  # noqa: F401
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import enum  # noqa: F401
import fractions  # noqa: F401
import functools  # noqa: F401
import hashlib  # noqa: F401
import heapq  # noqa: F401
import inspect  # noqa: F401
import itertools  # noqa: F401
import json  # noqa: F401
import math  # noqa: F401
import operator  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401
import struct  # noqa: F401
import textwrap  # noqa: F401
import time  # noqa: F401
import traceback  # noqa: F401
import typing  # noqa: F401
